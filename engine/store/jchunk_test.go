package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
)

// chunkSamples are rows the format must carry: empty and missing data,
// data of any byte, huge data, sequences and times that go back, large
// and negative numbers, and one event merged into several entities.
func chunkSamples() []JournalRow {
	binaryish := make([]byte, 256)
	for i := range binaryish {
		binaryish[i] = byte(i)
	}
	huge := bytes.Repeat([]byte(`{"x":"0123456789abcdef"}`), 1<<15) // 768 KiB
	shared := []byte(`{"customer":"c-1"}`)
	return []JournalRow{
		{Seq: 7, At: 1_700_000_000_000, Etype: "order", Ekey: "o-1", Subject: "orders.created", MsgID: "m-1", Data: []byte(`{"a":1}`)},
		{Seq: 8, At: 1_700_000_000_001, Etype: "order", Ekey: "o-1", Subject: "orders.updated", MsgID: "", Data: nil},
		{Seq: 9, At: 1_699_999_999_000, Etype: "", Ekey: "", Subject: "", MsgID: "", Data: binaryish},
		{Seq: 3, At: -5, Etype: "ünïcode", Ekey: "k\x00ey", Subject: "s", MsgID: "id", Data: huge}, // a recreated stream: seq goes back
		{Seq: math.MaxUint64, At: math.MaxInt64, Etype: "order", Ekey: "o-2", Subject: "s", MsgID: "x", Data: shared},
		{Seq: math.MaxUint64, At: math.MaxInt64, Etype: "customer", Ekey: "c-1", Subject: "s", MsgID: "x", Data: bytes.Clone(shared)}, // same event
		{Seq: 0, At: math.MinInt64, Etype: "order", Ekey: "o-3", Subject: "outside", MsgID: "y", Data: []byte{}},
	}
}

// TestChunkRoundTrip: every row comes back as it went in (empty data as
// nil), and the chunk's bounds are the rows' least and greatest.
func TestChunkRoundTrip(t *testing.T) {
	rows := chunkSamples()
	for n := 0; n <= len(rows); n++ {
		var e chunkEncoder
		e.reset()
		for i := range rows[:n] {
			e.add(&rows[i])
		}
		got, err := decodeAll(42, e.bytes(), nil)
		if err != nil {
			t.Fatalf("%d rows: %v", n, err)
		}
		want := make([]JournalRow, n)
		for i, r := range rows[:n] {
			if len(r.Data) == 0 {
				r.Data = nil
			}
			want[i] = r
		}
		if len(got) != n || (n > 0 && !reflect.DeepEqual(got, want)) {
			t.Fatalf("%d rows: decoded %+v", n, got)
		}
	}
	var e chunkEncoder
	e.reset()
	for i := range rows {
		e.add(&rows[i])
	}
	if e.minSeq != 0 || e.maxSeq != math.MaxUint64 || e.minAt != math.MinInt64 || e.maxAt != math.MaxInt64 || e.n != len(rows) {
		t.Fatalf("bounds seq %d–%d, at %d–%d, n %d", e.minSeq, e.maxSeq, e.minAt, e.maxAt, e.n)
	}
	// The second of two rows of one event does not carry its data again.
	one := []JournalRow{rows[4]}
	two := []JournalRow{rows[4], rows[5]}
	if a, b := len(encodeChunk(one)), len(encodeChunk(two)); b-a > 20 {
		t.Fatalf("a second entity of one event takes %d bytes", b-a)
	}
}

// TestChunkEncoderReusesItsBuffer: encoding into a grown buffer allocates
// nothing.
func TestChunkEncoderReusesItsBuffer(t *testing.T) {
	rows := journalRows(1, 300)
	var e chunkEncoder
	encode := func() {
		e.reset()
		for i := range rows {
			e.add(&rows[i])
		}
		_ = e.bytes()
	}
	encode()
	if a := testing.AllocsPerRun(20, encode); a != 0 {
		t.Fatalf("%v allocations per chunk", a)
	}
}

// TestChunkDecodeRejectsDamage: a damaged chunk is an error that names
// it, never a panic: every truncation and every single-byte change of a
// valid chunk, and some hand-made ones.
func TestChunkDecodeRejectsDamage(t *testing.T) {
	good := encodeChunk(chunkSamples()[:3])
	for i := range len(good) {
		checkDamaged(t, fmt.Sprint("cut at ", i), good[:i], true)
		for _, v := range []byte{0x00, 0x01, 0x7f, 0x80, 0xff} {
			b := bytes.Clone(good)
			b[i] = v
			checkDamaged(t, fmt.Sprintf("byte %d = %#x", i, v), b, false)
		}
	}
	checkDamaged(t, "trailing byte", append(bytes.Clone(good), 0), true)
	hand := map[string][]byte{
		"version 2":              {2, 0},
		"count beyond the bytes": binary.AppendUvarint([]byte{chunkVersion}, 1<<40),
		"overlong count":         {chunkVersion, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01},
		"first row refers back":  {chunkVersion, 1, chunkSameEvent, 0, 0},
		"unknown flag":           {chunkVersion, 1, 0x02, 0, 0, 0, 0, 0, 0, 0},
		"huge string":            append([]byte{chunkVersion, 1, 0}, binary.AppendUvarint(nil, math.MaxUint64)...),
		"row count short":        {chunkVersion, 2, 0, 0, 0, 0, 0, 0, 0, 0},
	}
	for name, b := range hand {
		checkDamaged(t, name, b, true)
	}
}

// checkDamaged decodes b as chunk 9; must says it cannot decode (a change
// of one byte may still make a valid chunk: a length within bounds).
func checkDamaged(t *testing.T, what string, b []byte, must bool) {
	t.Helper()
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("%s: panic %v", what, p)
		}
	}()
	_, err := decodeAll(9, b, nil)
	if err == nil {
		if must {
			t.Fatalf("%s: decoded", what)
		}
		return
	}
	var ce *CorruptChunkError
	if !errors.As(err, &ce) || ce.Chunk != 9 || !strings.Contains(err.Error(), "journal chunk 9") {
		t.Fatalf("%s: error %v does not name the chunk", what, err)
	}
}

// FuzzJournalChunk: no input makes the decoder panic, and what it decodes
// encodes to a chunk that decodes the same.
func FuzzJournalChunk(f *testing.F) {
	f.Add(encodeChunk(chunkSamples()[:3]))
	f.Add(encodeChunk(chunkSamples()[4:]))
	f.Add([]byte{chunkVersion, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		rows, err := decodeAll(1, b, nil)
		if err != nil {
			return
		}
		again, err := decodeAll(2, encodeChunk(rows), nil)
		if err != nil || !reflect.DeepEqual(rows, again) {
			t.Fatalf("re-encoded %+v: %+v, %v", rows, again, err)
		}
	})
}
