package cache

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"time"
)

// JSONCodec encodes values for Redis with encoding/json.
type JSONCodec[V any] struct{}

// Marshal implements Codec.
func (JSONCodec[V]) Marshal(v V) ([]byte, error) { return json.Marshal(v) }

// Unmarshal implements Codec.
func (JSONCodec[V]) Unmarshal(b []byte) (V, error) {
	var v V
	err := json.Unmarshal(b, &v)
	return v, err
}

// A Redis value is an envelope around the codec's bytes: a magic byte and a format version
// (so bytes written by anything else, or by a future format, are a miss rather than a wrong
// decode), the entry's expiry (so a value promoted to L1 keeps a short Loaded.TTL instead of
// getting the full L1TTL), and its L1 cost.
const (
	envelopeMagic   = 0xA7
	envelopeVersion = 1
	envelopeHeader  = 2 + 8 + 8
)

var errEnvelope = errors.New("cache: value in Redis is not a cache envelope")

func encodeEnvelope(payload []byte, exp time.Time, cost int64) []byte {
	b := make([]byte, envelopeHeader, envelopeHeader+len(payload))
	b[0], b[1] = envelopeMagic, envelopeVersion
	binary.BigEndian.PutUint64(b[2:], uint64(exp.UnixMilli()))
	binary.BigEndian.PutUint64(b[10:], uint64(cost))
	return append(b, payload...)
}

func decodeEnvelope(b []byte) (payload []byte, exp time.Time, cost int64, err error) {
	if len(b) < envelopeHeader || b[0] != envelopeMagic || b[1] != envelopeVersion {
		return nil, time.Time{}, 0, errEnvelope
	}
	exp = time.UnixMilli(int64(binary.BigEndian.Uint64(b[2:])))
	cost = int64(binary.BigEndian.Uint64(b[10:]))
	return b[envelopeHeader:], exp, cost, nil
}
