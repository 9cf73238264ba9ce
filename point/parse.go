package point

import (
	"fmt"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"
)

// Parse decodes line protocol with nanosecond timestamps (what Encoder writes) into points.
// Tests and tools use it to read back what apmkit wrote.
func Parse(data []byte) ([]*Point, error) {
	dec := lineprotocol.NewDecoderWithBytes(data)
	var pts []*Point
	for dec.Next() {
		p, err := parseLine(dec)
		if err != nil {
			return pts, fmt.Errorf("point: line %d: %w", len(pts)+1, err)
		}
		pts = append(pts, p)
	}
	return pts, nil
}

func parseLine(dec *lineprotocol.Decoder) (*Point, error) {
	name, err := dec.Measurement()
	if err != nil {
		return nil, err
	}
	p := &Point{Name: string(name)}
	for {
		k, v, err := dec.NextTag()
		if err != nil {
			return nil, err
		}
		if k == nil {
			break
		}
		p.Tags = append(p.Tags, Tag{Key: string(k), Value: string(v)})
	}
	for {
		k, v, err := dec.NextField()
		if err != nil {
			return nil, err
		}
		if k == nil {
			break
		}
		p.Fields = append(p.Fields, fromLP(string(k), v))
	}
	// A line without a timestamp reads as Unix time 0, so it is visible rather than "now".
	t, err := dec.Time(lineprotocol.Nanosecond, time.Unix(0, 0))
	if err != nil {
		return nil, err
	}
	p.Time = t.UnixNano()
	return p, nil
}

func fromLP(key string, v lineprotocol.Value) Field {
	switch v.Kind() {
	case lineprotocol.Int:
		return Int(key, v.IntV())
	case lineprotocol.Uint:
		return Uint(key, v.UintV())
	case lineprotocol.Float:
		return Float(key, v.FloatV())
	case lineprotocol.Bool:
		return Bool(key, v.BoolV())
	default:
		return String(key, v.StringV())
	}
}
