package explorer

import (
	"reflect"
	"testing"

	"github.com/apmkit/apmkit/tracestore"
)

func TestCharts(t *testing.T) {
	jvm := func(ms int64, kv ...any) tracestore.Sample {
		s := tracestore.Sample{TimeMs: ms, Kind: tracestore.SampleJVM}
		for i := 0; i < len(kv); i += 2 {
			s.Values = append(s.Values, tracestore.Value{Name: kv[i].(string), Value: kv[i+1].(float64)})
		}
		return s
	}
	samples := []tracestore.Sample{
		jvm(1000, "JvmCpuLoad", 0.5, "JvmGcOldTime", 100.0, "CollectInterval", 5000.0, "TransactionSampledNew", 40.0, "TransactionUnsampledNew", 10.0),
		jvm(6000, "JvmCpuLoad", 0.25, "JvmGcOldTime", 130.0, "CollectInterval", 5000.0, "TransactionSampledNew", 5.0),
		jvm(11000, "JvmCpuLoad", 0.0, "JvmGcOldTime", 20.0, "CollectInterval", 5000.0, "TransactionSampledNew", 0.0), // restarted
		{TimeMs: 6000, Kind: tracestore.SampleDataSource, Pool: "7", Database: "shop", URL: "jdbc:mysql://db/shop",
			Values: []tracestore.Value{{Name: "ActiveConnectionSize", Value: 3}, {Name: "MaxConnectionSize", Value: 10}}},
	}
	got := map[string]chart{}
	var names []string
	for _, c := range charts(samples) {
		got[c.Name] = c
		names = append(names, c.Name)
	}
	if !reflect.DeepEqual(names, []string{"cpu", "gc_time", "tps", "datasource_7"}) {
		t.Fatalf("charts %v: only those with data, in order", names)
	}
	points := func(c, s string) [][2]float64 {
		for _, se := range got[c].Series {
			if se.Name == s {
				return se.Points
			}
		}
		return nil
	}
	for _, c := range []struct {
		chart, series string
		want          [][2]float64
	}{
		{"cpu", "jvm", [][2]float64{{1000, 50}, {6000, 25}, {11000, 0}}},
		{"gc_time", "old", [][2]float64{{1000, 0}, {6000, 30}, {11000, 20}}}, // per sample; a restart counts from 0
		{"tps", "total", [][2]float64{{1000, 10}, {6000, 1}, {11000, 0}}},
		{"datasource_7", "active", [][2]float64{{6000, 3}}},
	} {
		if p := points(c.chart, c.series); !reflect.DeepEqual(p, c.want) {
			t.Errorf("%s/%s = %v, want %v", c.chart, c.series, p, c.want)
		}
	}
	if got["datasource_7"].Title != "Data source shop (jdbc:mysql://db/shop)" {
		t.Errorf("pool title %q", got["datasource_7"].Title)
	}
}

func TestThin(t *testing.T) {
	var pts [][2]float64
	for i := range 10 {
		pts = append(pts, [2]float64{float64(i), float64(i * 10)})
	}
	want := [][2]float64{{1, 10}, {4, 40}, {7, 70}, {9, 90}}
	if got := thin(pts, 4); !reflect.DeepEqual(got, want) {
		t.Errorf("thin = %v, want %v", got, want)
	}
	if got := thin(pts, 10); len(got) != 10 {
		t.Errorf("under the bound: %d points", len(got))
	}
}
