// Package defaults applies the rule of proxywatch's Options structs: a field
// left zero (or set negative) means its documented default.
package defaults

// Or returns v, or def when v is zero or negative.
func Or[T ~int | ~int64](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}
