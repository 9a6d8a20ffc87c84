"""The report's table: one (figure, value) row per headline number of the sections that ran, printed aligned.
(The whole report, every section's figures, is printed as JSON after it.)"""

from __future__ import annotations

from bench.sections.accuracy import CONFIDENT


def summary_rows(report: dict) -> list[tuple[str, str]]:
    """One (figure, value) row per headline number of the sections that ran."""
    rows = [("machine", f"{report.get('machine')}, GPUs: {', '.join(report.get('accelerators') or []) or 'none'}")]
    if t := report.get("throughput"):
        rows.append(
            (
                "trial images/s vs bare model.fit",
                f"{t['trial_images_per_s']} vs {t['bare_keras_images_per_s']} "
                f"(ratio {t['ratio_trial_vs_bare']}, target >= 0.95)",
            )
        )
    if f := report.get("flops"):
        rows.append(("fp32 matmul GFLOP/s", str(f["matmul_gflops"])))
        if "trial_effective_gflops" in f:
            rows.append(
                ("trial effective GFLOP/s", f"{f['trial_effective_gflops']} (ratio {f['ratio_trial_vs_matmul']})")
            )
    if pr := report.get("precision"):
        other = pr["compared"]
        rows.append(
            (f"matmul GFLOP/s float32 / {other}", f"{pr['matmul_gflops']['float32']} / {pr['matmul_gflops'][other]}")
        )
        rows.append(("--precision auto here", f"{pr['auto_picks']} ({pr['auto_because']})"))
        for run in pr["runs"]:
            f32, low = run["float32"], run[other]
            rows.append(
                (
                    f"images/s float32 vs {other}, batch {run['batch_size']}",
                    f"{f32['images_per_s']} vs {low['images_per_s']} ({run['ratio_vs_float32']}x); "
                    f"of matmul {f32['of_matmul']} / {low['of_matmul']}; per CPU second "
                    f"{f32['images_per_cpu_s']} vs {low['images_per_cpu_s']} ({run['cpu_ratio_vs_float32']}x)",
                )
            )
        first = pr["runs"][0]["batch_size"]
        for run in pr["runs"][1:]:
            rows.append(
                (
                    f"images/s float32 at batch {first} vs {other} at batch {run['batch_size']}",
                    f"{run['ratio_vs_float32_first_batch']}x; per CPU second "
                    f"{run['cpu_ratio_vs_float32_first_batch']}x",
                )
            )
    if pf := report.get("profile"):
        rows.append(
            (
                f"one epoch's op time ({pf['precision']}, TF profiler)",
                ", ".join(f"{k} {v} %" for k, v in pf["groups"].items())
                + f" (of {pf['op_self_s']} s op time; epoch {pf['epoch_wall_s']} s wall, {pf['images_per_s']} "
                f"images/s under the profiler, {pf['rows']} rows)",
            )
        )
    if o := report.get("overhead"):
        rows.append(
            (
                "dry-run overhead per trial",
                f"{100 * o['overhead_vs_trial_durations']:.1f} % vs the trials' own "
                f"durations, {100 * o['overhead_vs_by_hand']:.1f} % vs by hand "
                f"(target < 10 %)",
            )
        )
    if e := report.get("efficiency"):
        for name in ("random", "medianstop", "hyperband"):
            r = e[name]
            speedup = f", {r['speedup_vs_random']}x vs random" if r.get("speedup_vs_random") else ""
            rows.append(
                (
                    f"epochs to val_accuracy {e['target_val_accuracy']}: {name}",
                    f"{r['epochs_to_target'] or 'not reached'} ({r['epochs_total']} in all){speedup}",
                )
            )
        if (o := e.get("over_orders")) and o.get("reachable"):
            ms = (
                f"{o['medianstop_mean_epochs']}, {o['speedup_vs_random']}x"
                if "medianstop_mean_epochs" in o
                else "never reached"
            )
            rows.append(
                (
                    f"the same, mean over {o['orders']} orders of random's trials",
                    f"random {o['random_mean_epochs']}, medianstop {ms} "
                    f"(medianstop missed the target in {o['medianstop_missed_orders']} orders)",
                )
            )
            sweep = [r for r in e.get("medianstop_settings_sweep", []) if r.get("speedup_vs_random")]
            if sweep:
                top = max(sweep, key=lambda r: r["speedup_vs_random"])
                rows.append(
                    (
                        "the same, best medianstop setting",
                        f"start_step {top['start_step']}, min_trials_required "
                        f"{top['min_trials_required']}: {top['speedup_vs_random']}x "
                        f"(missed in {top['medianstop_missed_orders']} orders)",
                    )
                )
            if "own_order_replayed_epochs_total" in o:
                rows.append(
                    (
                        "check: replay in the run's own order",
                        f"{o['own_order_replayed_epochs_total']} epochs in "
                        f"all (the medianstop run: "
                        f"{e['medianstop']['epochs_total']})",
                    )
                )
    if h := report.get("asha"):

        def fig(d: dict) -> str:
            return f"{d['mean']} (sd {d['stdev']}, {d['min']}-{d['max']})"

        what = (
            f"epochs to val_accuracy {h['target_val_accuracy']} over {h['orders']} orders "
            f"of {h['configurations']} configs"
        )
        for name in ("random", "medianstop", "asha"):
            if name in h:
                speedup = f", {h[name]['speedup_vs_random']}x vs random" if "speedup_vs_random" in h[name] else ""
                missed = f"; missed in {h['missed_orders'][name]} orders" if h["missed_orders"].get(name) else ""
                rows.append((f"{what}: {name}", f"{fig(h[name])}{speedup}{missed}"))
        rows.append(
            (
                "asha epochs in all / best val_accuracy",
                f"{fig(h['epochs_total']['asha'])} (random "
                f"{h['epochs_total']['random']}) / "
                f"{fig(h['best_val_accuracy']['asha'])} (random "
                f"{h['best_val_accuracy']['random']})",
            )
        )
        if r := h.get("real_asha_run"):
            rows.append(
                (
                    "asha.yaml run for real (own proposals)",
                    f"{r['epochs_to_target'] or 'not reached'} epochs to "
                    f"target, {r['epochs_total']} in all, "
                    f"{r['wall_s']} s",
                )
            )
    if a := report.get("accuracy"):
        low, high = a["ensemble_val_accuracy_ci95"]
        rows.append(
            (
                "retrained default, 10 % hold-out",
                f"{a['ensemble_val_accuracy']:.4f} (95 % interval {low:.4f}-"
                f"{high:.4f}; {a['members']} x "
                f"{a['epochs_per_member']} epochs; members "
                + ", ".join(f"{v:.4f}" for v in a["member_final_val_accuracy"])
                + ")",
            )
        )
        rows.append(("retrained default, time", f"{a['wall_s']:.0f} s wall, {a['cpu_s']:.0f} s CPU"))
        rows.append(
            (
                "retrained default, hold-out errors",
                f"{len(a['errors'])} ({a['confident_errors']} with "
                f"p(label) < {CONFIDENT}, {a['errors_every_member_makes']} "
                f"made by every member); {a['errors_picture']}",
            )
        )
    if c := report.get("compare"):
        seeds = ", ".join(map(str, c["split_seeds"]))
        for name, errors in c["errors"].items():
            low, high = c["accuracy_ci95"][name]
            rows.append(
                (
                    f"compare, split seeds {seeds}: {name}",
                    f"{errors} errors in {c['rows']} rows (95 % interval {low:.4f}-{high:.4f})",
                )
            )
        for pair in c["pairs"]:
            rows.append(
                (
                    f"compare: {pair['a']} vs {pair['b']}",
                    f"only the first wrong {pair['only_a']}, only the second {pair['only_b']}, both "
                    f"{pair['both']}; McNemar p {pair['p']}",
                )
            )
    if sv := report.get("serve"):
        lat = sv["latency_ms"]
        rows.append(
            (
                f"serve: {sv['clients']} clients, {sv['batch']} image(s) a request, V1",
                f"{sv['requests_per_s']} requests/s over {sv['wall_s']} s; latency p50 {lat['p50']} ms, "
                f"p90 {lat['p90']} ms, p99 {lat['p99']} ms, max {lat['max']} ms",
            )
        )
        rss, threads = sv["rss_mib"], sv["threads"]
        rows.append(
            (
                "serve: answers, server memory and threads",
                f"{sv['statuses']}, failures {sv['failures'] or 'none'}; RSS {rss['before']} -> "
                f"{rss['after']} MiB (max {rss['max_during']} during); threads {threads['before']} -> "
                f"{threads['after']} (max {threads['max_during']})",
            )
        )
    return rows


def print_table(rows: list[tuple[str, str]]) -> None:
    """`rows` as two columns, the names padded to the longest."""
    width = max((len(name) for name, _ in rows), default=0)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
