package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// A journal chunk is the rows of one journal write (or a bounded part of
// one) encoded as one value, stored as one row of journal_chunks: SQLite
// then spends one insert, not one per row, and database/sql and cgo bind
// seven values per chunk instead of per row.
//
// Format, version 1 (all integers are Go's encoding/binary varints):
//
//	chunk  = version:byte(1) count:uvarint row{count}
//	row    = flags:byte etype:str ekey:str event?
//	event  = seq:varint at:varint subject:str msg_id:str data:str
//	str    = length:uvarint byte{length}
//
// seq and at are the differences from the previous row's (from 0 for the
// first row; seq as a two's-complement int64, so a stream that starts over
// encodes too). flags bit 0 (chunkSameEvent) says the row is the same event
// as the previous row, merged into another entity: the event part is left
// out and the previous row's is meant. Other flag bits are reserved (an
// error). Empty and missing data are both stored as length 0 and read
// back as nil. Nothing may follow the last row.
const (
	chunkVersion   = 1
	chunkSameEvent = 1 << 0
	// chunkHeadroom is room before the rows for the version and count,
	// which are known only once the rows are: the header is written
	// right-aligned into it, and the chunk starts where the header does.
	chunkHeadroom = 1 + binary.MaxVarintLen64
	// journalChunkRows and journalChunkBytes bound a chunk: a write of more
	// rows becomes several chunks. Readers decode a whole chunk to find one
	// entity's rows in it, and explain reads up to DefaultLimit (500) of an
	// entity's events, each possibly in a chunk of its own: small chunks
	// keep that to a few MB. Per chunk the writer spends one INSERT, a few
	// µs, which 512 rows make negligible. A single row larger than the
	// byte bound is a chunk of its own.
	journalChunkRows  = 512
	journalChunkBytes = 128 << 10
)

// chunkEncoder encodes rows into a chunk in a buffer it reuses: the
// writer's hot path allocates nothing once the buffer has grown.
type chunkEncoder struct {
	buf  []byte
	n    int
	prev *JournalRow // the previous row, while encoding

	minSeq, maxSeq uint64
	minAt, maxAt   int64
}

// reset starts a new chunk.
func (e *chunkEncoder) reset() {
	if cap(e.buf) < chunkHeadroom {
		e.buf = make([]byte, chunkHeadroom, 4096)
	}
	e.buf = e.buf[:chunkHeadroom]
	e.n, e.prev = 0, nil
}

// full reports whether the chunk has reached its bounds.
func (e *chunkEncoder) full() bool {
	return e.n >= journalChunkRows || len(e.buf)-chunkHeadroom >= journalChunkBytes
}

// add appends r to the chunk. r must stay unchanged until the next reset
// (the next row is compared with it).
func (e *chunkEncoder) add(r *JournalRow) {
	b := e.buf
	var prevSeq uint64
	var prevAt int64
	same := false
	if p := e.prev; p != nil {
		prevSeq, prevAt = p.Seq, p.At
		same = r.Seq == p.Seq && r.At == p.At && r.Subject == p.Subject && r.MsgID == p.MsgID && bytes.Equal(r.Data, p.Data)
	}
	if same {
		b = append(b, chunkSameEvent)
	} else {
		b = append(b, 0)
	}
	b = appendStr(b, r.Etype)
	b = appendStr(b, r.Ekey)
	if !same {
		b = binary.AppendVarint(b, int64(r.Seq-prevSeq))
		b = binary.AppendVarint(b, r.At-prevAt)
		b = appendStr(b, r.Subject)
		b = appendStr(b, r.MsgID)
		b = binary.AppendUvarint(b, uint64(len(r.Data)))
		b = append(b, r.Data...)
	}
	e.buf = b
	if e.n == 0 {
		e.minSeq, e.maxSeq, e.minAt, e.maxAt = r.Seq, r.Seq, r.At, r.At
	} else {
		e.minSeq, e.maxSeq = min(e.minSeq, r.Seq), max(e.maxSeq, r.Seq)
		e.minAt, e.maxAt = min(e.minAt, r.At), max(e.maxAt, r.At)
	}
	e.n++
	e.prev = r
}

// bytes is the encoded chunk; it stays valid until the next reset.
func (e *chunkEncoder) bytes() []byte {
	var head [chunkHeadroom]byte
	h := append(head[:0], chunkVersion)
	h = binary.AppendUvarint(h, uint64(e.n))
	start := chunkHeadroom - len(h)
	copy(e.buf[start:], h)
	return e.buf[start:]
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// encodeChunk is one chunk of rows, in a new slice (tests, conversions).
func encodeChunk(rows []JournalRow) []byte {
	var e chunkEncoder
	e.reset()
	for i := range rows {
		e.add(&rows[i])
	}
	return bytes.Clone(e.bytes())
}

// CorruptChunkError is a journal chunk that cannot be decoded.
type CorruptChunkError struct {
	Chunk  int64 // its id in journal_chunks
	Reason string
}

func (e *CorruptChunkError) Error() string {
	return fmt.Sprintf("journal chunk %d is corrupt: %s", e.Chunk, e.Reason)
}

// chunkRow is a decoded row whose fields point into the chunk: nothing is
// copied until a caller keeps the row (keep).
type chunkRow struct {
	seq                               uint64
	at                                int64
	etype, ekey, subject, msgID, data []byte
}

// is reports whether the row is of the entity etype/ekey.
func (r *chunkRow) is(etype, ekey string) bool {
	return string(r.ekey) == ekey && string(r.etype) == etype
}

// keep copies the row out of the chunk.
func (r *chunkRow) keep() JournalRow {
	return JournalRow{Seq: r.seq, At: r.at, Etype: string(r.etype), Ekey: string(r.ekey),
		Subject: string(r.subject), MsgID: string(r.msgID), Data: bytes.Clone(r.data)}
}

// chunkDecoder reads a chunk's rows one by one. It checks every length
// against what is left, so a corrupt chunk is an error, never a panic or
// a huge allocation.
type chunkDecoder struct {
	id   int64
	b    []byte
	left uint64 // rows still to read
	seen bool   // a row was read: chunkSameEvent may refer to it
	row  chunkRow
}

// decodeChunk starts decoding the chunk id with data b.
func decodeChunk(id int64, b []byte) (*chunkDecoder, error) {
	d := &chunkDecoder{id: id}
	return d, d.reset(id, b)
}

// reset starts decoding another chunk with the same decoder.
func (d *chunkDecoder) reset(id int64, b []byte) error {
	*d = chunkDecoder{id: id}
	if len(b) == 0 {
		return d.corrupt("empty")
	}
	if b[0] != chunkVersion {
		return d.corrupt(fmt.Sprintf("format version %d, want %d", b[0], chunkVersion))
	}
	n, k := binary.Uvarint(b[1:])
	if k <= 0 {
		return d.corrupt("bad row count")
	}
	b = b[1+k:]
	// A row takes at least 3 bytes (flags and two lengths).
	if n > uint64(len(b))/3 {
		return d.corrupt(fmt.Sprintf("%d rows in %d bytes", n, len(b)))
	}
	d.b, d.left = b, n
	return nil
}

// count is how many rows are left to read.
func (d *chunkDecoder) count() int { return int(d.left) }

// next reads the next row into d.row; false at the end.
func (d *chunkDecoder) next() (bool, error) {
	if d.left == 0 {
		if len(d.b) != 0 {
			return false, d.corrupt(fmt.Sprintf("%d bytes after the last row", len(d.b)))
		}
		return false, nil
	}
	if len(d.b) == 0 {
		return false, d.corrupt("ends inside a row")
	}
	flags := d.b[0]
	d.b = d.b[1:]
	if flags&^chunkSameEvent != 0 {
		return false, d.corrupt(fmt.Sprintf("unknown row flags %#x", flags))
	}
	r := &d.row
	var err error
	if r.etype, err = d.str(); err != nil {
		return false, err
	}
	if r.ekey, err = d.str(); err != nil {
		return false, err
	}
	if flags&chunkSameEvent != 0 {
		if !d.seen {
			return false, d.corrupt("the first row refers to a previous one")
		}
	} else {
		ds, k := binary.Varint(d.b)
		if k <= 0 {
			return false, d.corrupt("bad seq")
		}
		d.b = d.b[k:]
		da, k := binary.Varint(d.b)
		if k <= 0 {
			return false, d.corrupt("bad at")
		}
		d.b = d.b[k:]
		r.seq += uint64(ds)
		r.at += da
		if r.subject, err = d.str(); err != nil {
			return false, err
		}
		if r.msgID, err = d.str(); err != nil {
			return false, err
		}
		if r.data, err = d.str(); err != nil {
			return false, err
		}
		if len(r.data) == 0 {
			r.data = nil
		}
	}
	d.left--
	d.seen = true
	return true, nil
}

// str reads a length-prefixed string of the chunk.
func (d *chunkDecoder) str() ([]byte, error) {
	n, k := binary.Uvarint(d.b)
	if k <= 0 {
		return nil, d.corrupt("bad length")
	}
	if n > uint64(len(d.b)-k) {
		return nil, d.corrupt(fmt.Sprintf("a length of %d with %d bytes left", n, len(d.b)-k))
	}
	s := d.b[k : k+int(n) : k+int(n)]
	d.b = d.b[k+int(n):]
	return s, nil
}

func (d *chunkDecoder) corrupt(reason string) error {
	return &CorruptChunkError{Chunk: d.id, Reason: reason}
}

// decodeAll decodes every row of the chunk id (tests, JournalAll, the
// writer's rewrite of a chunk).
func decodeAll(id int64, b []byte, into []JournalRow) ([]JournalRow, error) {
	d, err := decodeChunk(id, b)
	if err != nil {
		return into, err
	}
	for {
		ok, err := d.next()
		if err != nil {
			return into, err
		}
		if !ok {
			return into, nil
		}
		into = append(into, d.row.keep())
	}
}
