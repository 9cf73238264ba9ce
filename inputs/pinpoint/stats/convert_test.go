package stats

import (
	"testing"

	"github.com/apmkit/apmkit/inputs/pinpoint/meta"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
	"github.com/apmkit/apmkit/point"
)

// Points of one message share their backing arrays (pointSlab). A caller that adds tags and
// fields to one point (global tags, pipelines) must not change its neighbours.
func TestPointsOfOneMessageAreIndependent(t *testing.T) {
	c := converterKnowing(t, map[*meta.Sender]*pb.PAgentInfo{goSender: goAgentInfo()})
	for name, msg := range map[string]*pb.PStatMessage{
		"jvm":         batchMessage(goSamples()...),
		"jvm and dbs": batchMessage(javaSample(), javaSample()),
		"uri":         uriMessage(goURIEntry(), goURIEntry()),
	} {
		t.Run(name, func(t *testing.T) {
			pts, _ := c.Stat(goSender, msg)
			if len(pts) < 2 {
				t.Fatalf("got %d points", len(pts))
			}
			before := canonical(t, pts[1:])
			for i := range 40 {
				pts[0].SetTag("a_extra", "x")
				pts[0].SetTag("zz_extra", "y")
				pts[0].AddField(point.Int("extra_field_"+string(rune('a'+i%26))+string(rune('a'+i/26)), int64(i)))
			}
			if after := canonical(t, pts[1:]); after != before {
				t.Errorf("growing point 0 changed its neighbours\nbefore:\n%s\nafter:\n%s", before, after)
			}
			if err := pts[0].Validate(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestGCTypeNames(t *testing.T) {
	for code, want := range map[pb.PJvmGcType]string{
		pb.PJvmGcType_JVM_GC_TYPE_UNKNOWN: "UNKNOWN", pb.PJvmGcType_JVM_GC_TYPE_SERIAL: "SERIAL",
		pb.PJvmGcType_JVM_GC_TYPE_PARALLEL: "PARALLEL", pb.PJvmGcType_JVM_GC_TYPE_CMS: "CMS",
		pb.PJvmGcType_JVM_GC_TYPE_G1: "G1", pb.PJvmGcType_JVM_GC_TYPE_ZGC: "ZGC", 9: "UNKNOWN_9",
	} {
		if got := gcTypeName(code); got != want {
			t.Errorf("gcTypeName(%d) = %q, want %q", code, got, want)
		}
	}
}
