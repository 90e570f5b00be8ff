package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
)

// A journal chunk is the rows of one journal write (or a bounded part of
// one) encoded as one value, stored as one row of journal_chunks: SQLite
// then spends one insert, not one per row, and database/sql and cgo bind
// seven values per chunk instead of per row.
//
// Format, version 1 (the numbers but the version and flags bytes are Go's
// encoding/binary varints):
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
	// keep that at worst to some 30 MB decoded in 40 ms
	// (BenchmarkJournalEvents). Per chunk the writer spends one INSERT,
	// which 512 rows make negligible. The row that reaches the byte bound
	// is the chunk's last, however large.
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

// encode makes rows the chunk, whatever their number or size (a rewrite
// of a chunk; tests).
func (e *chunkEncoder) encode(rows []JournalRow) {
	e.reset()
	for i := range rows {
		e.add(&rows[i])
	}
}

// encodeChunk is one chunk of rows, in a new slice (tests).
func encodeChunk(rows []JournalRow) []byte {
	var e chunkEncoder
	e.encode(rows)
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

// span is a field of a decoded row: where it is in the chunk. Offsets
// rather than slices: setting them needs no GC write barrier, which was a
// seventh of a reader's time.
type span struct{ lo, hi int }

// chunkRow is a decoded row whose fields are spans of the chunk: nothing
// is copied until a caller keeps the row.
type chunkRow struct {
	seq                               uint64
	at                                int64
	etype, ekey, subject, msgID, data span
}

// chunkDecoder reads a chunk's rows one by one. It checks every length
// against what is left, so a corrupt chunk is an error, never a panic or
// a huge allocation.
type chunkDecoder struct {
	id   int64
	b    []byte // the chunk
	pos  int    // the next row's offset in b
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
	*d = chunkDecoder{id: id, b: b}
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
	d.pos = 1 + k
	// A row takes at least 3 bytes (flags and two lengths).
	if n > uint64(len(b)-d.pos)/3 {
		return d.corrupt(fmt.Sprintf("%d rows in %d bytes", n, len(b)-d.pos))
	}
	d.left = n
	return nil
}

// field is the bytes of a span of the row.
func (d *chunkDecoder) field(s span) []byte { return d.b[s.lo:s.hi:s.hi] }

// is reports whether the row is of the entity etype/ekey.
func (d *chunkDecoder) is(etype, ekey string) bool {
	return string(d.field(d.row.ekey)) == ekey && string(d.field(d.row.etype)) == etype
}

// keep copies the row out of the chunk; empty data is nil.
func (d *chunkDecoder) keep() JournalRow {
	return d.keepAs(string(d.field(d.row.etype)), string(d.field(d.row.ekey)))
}

// keepAs is keep for a row of the entity etype/ekey (is): the entity's
// strings are not copied again.
func (d *chunkDecoder) keepAs(etype, ekey string) JournalRow {
	r := &d.row
	var data []byte
	if r.data.hi > r.data.lo {
		data = bytes.Clone(d.field(r.data))
	}
	return JournalRow{Seq: r.seq, At: r.at, Etype: etype, Ekey: ekey,
		Subject: string(d.field(r.subject)), MsgID: string(d.field(r.msgID)), Data: data}
}

// next reads the next row into d.row; false at the end.
func (d *chunkDecoder) next() (bool, error) {
	if d.left == 0 {
		if d.pos != len(d.b) {
			return false, d.corrupt(fmt.Sprintf("%d bytes after the last row", len(d.b)-d.pos))
		}
		return false, nil
	}
	if d.pos >= len(d.b) {
		return false, d.corrupt("ends inside a row")
	}
	flags := d.b[d.pos]
	d.pos++
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
		ds, k := binary.Varint(d.b[d.pos:])
		if k <= 0 {
			return false, d.corrupt("bad seq")
		}
		d.pos += k
		da, k := binary.Varint(d.b[d.pos:])
		if k <= 0 {
			return false, d.corrupt("bad at")
		}
		d.pos += k
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
	}
	d.left--
	d.seen = true
	return true, nil
}

// str reads a length-prefixed string of the chunk.
func (d *chunkDecoder) str() (span, error) {
	n, k := binary.Uvarint(d.b[d.pos:])
	if k <= 0 {
		return span{}, d.corrupt("bad length")
	}
	lo := d.pos + k
	if n > uint64(len(d.b)-lo) {
		return span{}, d.corrupt(fmt.Sprintf("a length of %d with %d bytes left", n, len(d.b)-lo))
	}
	d.pos = lo + int(n)
	return span{lo, d.pos}, nil
}

func (d *chunkDecoder) corrupt(reason string) error {
	return &CorruptChunkError{Chunk: d.id, Reason: reason}
}

// each calls fn with d.row set to each of the chunk's rows in turn, up to
// the end or the damage (whose error it returns).
func (d *chunkDecoder) each(fn func()) error {
	for {
		ok, err := d.next()
		if err != nil || !ok {
			return err
		}
		fn()
	}
}

// decodeAll decodes every row of the chunk id (tests, JournalAll, the
// writer's rewrite of a chunk).
func decodeAll(id int64, b []byte, into []JournalRow) ([]JournalRow, error) {
	d, err := decodeChunk(id, b)
	if err != nil {
		return into, err
	}
	err = d.each(func() { into = append(into, d.keep()) })
	return into, err
}

// chunkQuerier is a database or a transaction.
type chunkQuerier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// eachChunk runs query, which selects the id and data of chunks, and
// calls fn with each chunk in turn until fn returns false or an error.
// data is valid only during the call (SQLite's own buffer).
func eachChunk(ctx context.Context, db chunkQuerier, query string, args []any, fn func(id int64, data []byte) (bool, error)) error {
	rs, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rs.Close()
	for rs.Next() {
		var id int64
		var data sql.RawBytes
		if err := rs.Scan(&id, &data); err != nil {
			return err
		}
		if more, err := fn(id, data); err != nil || !more {
			return err
		}
	}
	return rs.Err()
}
