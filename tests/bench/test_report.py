"""bench.report: the table of headline figures, one row per figure of the sections that ran."""

from __future__ import annotations

from bench.report import print_table, summary_rows


def test_summary_table_names_each_figure(capsys):
    report = {
        "machine": "x86_64, 2 cores",
        "accelerators": [],
        "throughput": {"trial_images_per_s": 790.0, "bare_keras_images_per_s": 800.0, "ratio_trial_vs_bare": 0.988},
        "efficiency": {
            "target_val_accuracy": 0.98,
            "random": {"epochs_to_target": 20, "epochs_total": 40},
            "medianstop": {"epochs_to_target": 8, "epochs_total": 30, "speedup_vs_random": 2.5},
            "hyperband": {"epochs_to_target": None, "epochs_total": 27, "speedup_vs_random": None},
            "over_orders": {
                "orders": 2000,
                "reachable": True,
                "random_mean_epochs": 34.45,
                "medianstop_missed_orders": 3,
                "medianstop_mean_epochs": 33.49,
                "speedup_vs_random": 1.03,
            },
            "medianstop_settings_sweep": [
                {
                    "start_step": 1,
                    "min_trials_required": 1,
                    "reachable": True,
                    "speedup_vs_random": 1.4,
                    "medianstop_missed_orders": 0,
                },
                {
                    "start_step": 3,
                    "min_trials_required": 3,
                    "reachable": True,
                    "speedup_vs_random": 1.03,
                    "medianstop_missed_orders": 3,
                },
            ],
        },
    }
    print_table(summary_rows(report))
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 7
    assert out[0].endswith("x86_64, 2 cores, GPUs: none")
    assert "790.0 vs 800.0 (ratio 0.988" in out[1]
    assert out[3].endswith("8 (30 in all), 2.5x vs random")
    assert out[4].endswith("not reached (27 in all)")
    assert out[5].endswith("random 34.45, medianstop 33.49, 1.03x (medianstop missed the target in 3 orders)")
    assert out[6].endswith("start_step 1, min_trials_required 1: 1.4x (missed in 0 orders)")
    # two aligned columns: every value starts where the longest name ends, plus two spaces
    width = max(len(name) for name, _ in summary_rows(report))
    assert all(line[width : width + 2] == "  " and line[width + 2] != " " for line in out)


def test_summary_table_gives_the_accuracy_with_its_interval(capsys):
    report = {
        "machine": "m",
        "accelerators": [],
        "accuracy": {
            "ensemble_val_accuracy": 0.99524,
            "ensemble_val_accuracy_ci95": [0.9927, 0.9969],
            "members": 3,
            "epochs_per_member": 20,
            "member_final_val_accuracy": [0.9948, 0.9943, 0.9936],
            "wall_s": 2327.0,
            "cpu_s": 3422.0,
            "errors": [{}] * 20,
            "confident_errors": 6,
            "errors_every_member_makes": 12,
            "errors_picture": "e.png",
        },
    }
    print_table(summary_rows(report))
    out = capsys.readouterr().out.splitlines()
    assert out[1].endswith("0.9952 (95 % interval 0.9927-0.9969; 3 x 20 epochs; members 0.9948, 0.9943, 0.9936)")
    assert out[3].endswith("20 (6 with p(label) < 0.01, 12 made by every member); e.png")
