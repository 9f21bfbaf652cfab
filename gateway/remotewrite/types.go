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
	// LabelBytes is the wire encoding of the series' label fields, tags
	// included, when they are back to back (as every sender writes them);
	// nil otherwise. It aliases the buffer given to Unmarshal. Series with
	// equal LabelBytes have equal Labels: it can key what is remembered of
	// a series' labels across requests.
	LabelBytes []byte
}
