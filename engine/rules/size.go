package rules

import (
	"reflect"
	"time"
)

// sizeWithin reports whether v, printed with fmt's %v (json false) or
// encoded by json.MarshalIndent with a two-space indent (json true), takes
// at most limit bytes. The estimate is an upper bound, so a true answer is
// safe; it is computed before anything is printed, because fmt and
// encoding/json build their whole output in memory: a list holding the
// same long string a thousand times is a few kilobytes of references and a
// gigabyte of text.
//
// The walk stops as soon as the estimate passes limit and every value it
// visits costs at least one byte, so it does at most limit steps whatever
// v is (shared references, deep nesting, even a cycle).
func sizeWithin(v any, limit int, json bool) bool {
	s := sizer{left: limit, json: json}
	s.value(v, 0)
	return s.left >= 0
}

type sizer struct {
	left int // budget still unspent; negative = over the limit
	json bool
}

var timeType = reflect.TypeFor[time.Time]()

func (s *sizer) spend(n int) bool {
	s.left -= n
	return s.left >= 0
}

// str is the cost of a string: its length for fmt, at most six bytes per
// byte (\u00XX) and the quotes for JSON.
func (s *sizer) str(n int) bool {
	if s.json {
		return s.spend(6*n + 2)
	}
	return s.spend(n)
}

// elem is the cost around one element of a list or map: the separator, and
// for indented JSON the newline and the indentation.
func (s *sizer) elem(depth int) bool {
	if s.json {
		return s.spend(2*depth + 4)
	}
	return s.spend(2)
}

// value charges v. Common shapes (decoded JSON, expr results) avoid
// reflection.
func (s *sizer) value(v any, depth int) bool {
	switch x := v.(type) {
	case nil:
		return s.spend(5)
	case string:
		return s.str(len(x))
	case bool:
		return s.spend(5)
	case int, int64, int32, uint, uint64, uint32, int16, int8, uint16, uint8:
		return s.spend(20)
	case float64, float32:
		return s.spend(24)
	case time.Time:
		return s.spend(96) // with a long zone name and the monotonic clock reading
	case time.Duration:
		return s.spend(32)
	case []any:
		if !s.spend(2) {
			return false
		}
		for _, e := range x {
			if !s.elem(depth+1) || !s.value(e, depth+1) {
				return false
			}
		}
		return true
	case map[string]any:
		if !s.spend(5) {
			return false
		}
		for k, e := range x {
			if !s.elem(depth+1) || !s.str(len(k)) || !s.value(e, depth+1) {
				return false
			}
		}
		return true
	}
	return s.reflect(reflect.ValueOf(v), depth)
}

func (s *sizer) reflect(v reflect.Value, depth int) bool {
	if !v.IsValid() {
		return s.spend(5)
	}
	switch v.Kind() {
	case reflect.String:
		return s.str(v.Len())
	case reflect.Slice, reflect.Array:
		if !s.spend(2) {
			return false
		}
		for i := 0; i < v.Len(); i++ {
			if !s.elem(depth+1) || !s.reflect(v.Index(i), depth+1) {
				return false
			}
		}
		return true
	case reflect.Map:
		if !s.spend(5) {
			return false
		}
		it := v.MapRange()
		for it.Next() {
			if !s.elem(depth+1) || !s.reflect(it.Key(), depth+1) || !s.reflect(it.Value(), depth+1) {
				return false
			}
		}
		return true
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return s.spend(5)
		}
		if !s.spend(1) { // a cycle through pointers ends here
			return false
		}
		return s.reflect(v.Elem(), depth)
	case reflect.Struct:
		if v.Type() == timeType {
			return s.spend(96) // with a long zone name and the monotonic clock reading
		}
		if !s.spend(2) {
			return false
		}
		for i := 0; i < v.NumField(); i++ {
			if !s.elem(depth+1) || !s.str(len(v.Type().Field(i).Name)) || !s.reflect(v.Field(i), depth+1) {
				return false
			}
		}
		return true
	}
	// Numbers, booleans, funcs, channels: fmt prints at most a few dozen
	// bytes.
	return s.spend(32)
}
