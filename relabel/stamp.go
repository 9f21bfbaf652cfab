package relabel

import "github.com/fedgate/fedgate/gateway/remotewrite"

// StampCluster removes every label called name from ls and appends
// name=value. It reports whether ls carried a different value for name: a
// client trying to write as another cluster, or a misconfigured external
// label. ls is reused in place; the result is not sorted.
func StampCluster(ls []remotewrite.Label, name, value string) (_ []remotewrite.Label, overwritten bool) {
	j := 0
	for _, l := range ls {
		if l.Name == name {
			overwritten = overwritten || l.Value != value
			continue
		}
		ls[j] = l
		j++
	}
	return append(ls[:j], remotewrite.Label{Name: name, Value: value}), overwritten
}
