//go:build tools

// The etcd server scripts/cluster/build.sh builds (its main package is the module's root).
package tools

import _ "go.etcd.io/etcd/server/v3"
