// Package splitmix holds splitmix64's finalizer, the bit mixer of apmkit's fixed hashes (the
// trace sampling hash, the row timestamps): every input bit flips about half of the output
// bits, so a few low or high bits of the result are well spread even for inputs that differ
// in one bit (consecutive transaction sequences). Stored data depends on it: it never changes.
package splitmix

// Mix64 is splitmix64's finalizer.
func Mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
