package remotewrite

// Label is one label pair. Both strings alias the buffer given to Unmarshal.
type Label struct {
	Name, Value string
}

// Sample is one float sample. Timestamp is in milliseconds since the epoch.
type Sample struct {
	Value     float64
	Timestamp int64
}

// Series is one prometheus.TimeSeries: its labels in wire order and its float
// samples. Exemplars and native histograms are skipped and only counted.
type Series struct {
	Labels  []Label
	Samples []Sample
	// Histograms is the number of native histogram samples that were skipped.
	Histograms int
	// Exemplars is the number of exemplars that were skipped.
	Exemplars int
}
