package explorer

import (
	"github.com/apmkit/apmkit/tracestore"
)

// chart is one inspector chart: series of [time ms, value] points in one unit.
type chart struct {
	Name   string   `json:"name"`
	Title  string   `json:"title"`
	Unit   string   `json:"unit"` // bytes, percent, count, ms, per_second
	Series []series `json:"series"`
}

type series struct {
	Name   string       `json:"name"`
	Points [][2]float64 `json:"points"`
}

// maxPoints bounds a series: a day of 5-second samples averaged into slots of two minutes.
const maxPoints = 720

// jvmChart says how a chart is drawn from JVM samples: a series per field, scaled; delta
// series show the change since the previous sample (Pinpoint's GC counts and times are
// totals since the agent started).
type jvmChart struct {
	name, title, unit string
	fields            []jvmField
	delta             bool
}

type jvmField struct {
	series, field string
	scale         float64
}

var jvmCharts = []jvmChart{
	{"heap", "Heap memory", "bytes", []jvmField{{"used", "JvmMemoryHeapUsed", 1}, {"max", "JvmMemoryHeapMax", 1}}, false},
	{"non_heap", "Non-heap memory", "bytes", []jvmField{{"used", "JvmMemoryNonHeapUsed", 1}, {"max", "JvmMemoryNonHeapMax", 1}}, false},
	{"cpu", "CPU usage", "percent", []jvmField{{"jvm", "JvmCpuLoad", 100}, {"system", "SystemCpuLoad", 100}}, false},
	{"gc_time", "GC time per sample", "ms", []jvmField{{"old", "JvmGcOldTime", 1}, {"young", "GcNewTime", 1}}, true},
	{"gc_count", "GC count per sample", "count", []jvmField{{"old", "JvmGcOldCount", 1}, {"young", "GcNewCount", 1}}, true},
	{"active_traces", "Active traces", "count", []jvmField{{"fast", "ActiveTraceFast", 1}, {"normal", "ActiveTraceNormal", 1},
		{"slow", "ActiveTraceSlow", 1}, {"very_slow", "ActiveTraceVerySlow", 1}}, false},
	{"response_time", "Response time", "ms", []jvmField{{"avg", "ResponseTimeAvg", 1}, {"max", "ResponseTimeMax", 1}}, false},
	{"threads", "Threads", "count", []jvmField{{"threads", "TotalThreadCount", 1}}, false},
	{"file_descriptors", "Open file descriptors", "count", []jvmField{{"open", "OpenFileDescriptorCount", 1}}, false},
	{"direct_buffers", "Direct buffers", "bytes", []jvmField{{"direct", "DirectMemoryUsed", 1}, {"mapped", "MappedMemoryUsed", 1}}, false},
}

// tpsFields are a sample's transaction counts: their sum over the collect interval is TPS.
var tpsFields = []string{
	"TransactionSampledNew", "TransactionSampledContinuation", "TransactionUnsampledNew",
	"TransactionUnsampledContinuation", "TransactionSkippedNew", "TransactionSkippedContinuation",
}

// charts draws the inspector from an agent's samples (oldest first). A series the agent
// never sent is left out, and a chart without series too.
func charts(samples []tracestore.Sample) []chart {
	var jvm []tracestore.Sample
	pools := map[string][]tracestore.Sample{}
	var poolOrder []string
	for _, s := range samples {
		if s.Kind == tracestore.SampleDataSource {
			if _, seen := pools[s.Pool]; !seen {
				poolOrder = append(poolOrder, s.Pool)
			}
			pools[s.Pool] = append(pools[s.Pool], s)
			continue
		}
		jvm = append(jvm, s)
	}
	out := []chart{}
	for _, c := range jvmCharts {
		out = appendChart(out, chart{Name: c.name, Title: c.title, Unit: c.unit}, jvm, c.fields, c.delta)
	}
	if s := tps(jvm); len(s.Points) > 0 {
		out = append(out, chart{Name: "tps", Title: "Transactions per second", Unit: "per_second", Series: []series{s}})
	}
	for _, pool := range poolOrder {
		ps := pools[pool]
		title := "Data source " + ps[0].Database
		if ps[0].URL != "" {
			title += " (" + ps[0].URL + ")"
		}
		out = appendChart(out, chart{Name: "datasource_" + pool, Title: title, Unit: "count"}, ps,
			[]jvmField{{"active", "ActiveConnectionSize", 1}, {"max", "MaxConnectionSize", 1}}, false)
	}
	return out
}

// appendChart adds c with a series per field that has values, if any has.
func appendChart(out []chart, c chart, samples []tracestore.Sample, fields []jvmField, delta bool) []chart {
	for _, f := range fields {
		if s := fieldSeries(samples, f, delta); len(s.Points) > 0 {
			c.Series = append(c.Series, s)
		}
	}
	if len(c.Series) == 0 {
		return out
	}
	return append(out, c)
}

func fieldSeries(samples []tracestore.Sample, f jvmField, delta bool) series {
	s := series{Name: f.series}
	prev, havePrev := 0.0, false
	for _, sm := range samples {
		v, ok := sm.Get(f.field)
		if !ok {
			continue
		}
		if delta {
			d := v - prev
			// The first sample has nothing to compare with; a total going down is an agent
			// restart, whose new total is all new.
			if !havePrev {
				d = 0
			} else if d < 0 {
				d = v
			}
			prev, havePrev = v, true
			v = d
		}
		s.Points = append(s.Points, [2]float64{float64(sm.TimeMs), v * f.scale})
	}
	s.Points = thin(s.Points, maxPoints)
	return s
}

// tps is the transactions of every kind a sample counts, per second of its interval.
func tps(samples []tracestore.Sample) series {
	s := series{Name: "total"}
	for _, sm := range samples {
		interval, ok := sm.Get("CollectInterval")
		if !ok || interval <= 0 {
			continue
		}
		sum, counted := 0.0, false
		for _, f := range tpsFields {
			v, ok := sm.Get(f)
			sum, counted = sum+v, counted || ok
		}
		if !counted {
			continue
		}
		s.Points = append(s.Points, [2]float64{float64(sm.TimeMs), sum * 1000 / interval})
	}
	s.Points = thin(s.Points, maxPoints)
	return s
}

// thin averages consecutive points into at most n, so a long range stays one small answer.
func thin(pts [][2]float64, n int) [][2]float64 {
	if len(pts) <= n {
		return pts
	}
	per := (len(pts) + n - 1) / n
	out := make([][2]float64, 0, n)
	for i := 0; i < len(pts); i += per {
		chunk := pts[i:min(i+per, len(pts))]
		var t, v float64
		for _, p := range chunk {
			t += p[0]
			v += p[1]
		}
		k := float64(len(chunk))
		out = append(out, [2]float64{t / k, v / k})
	}
	return out
}
