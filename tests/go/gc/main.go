// The garbage collector under allocation pressure: about 200 MB allocated in small
// objects, a rolling window of live ones, explicit runtime.GC() calls, a big map, and
// debug.FreeOSMemory. Prints checksums and yes/no checks, nothing that varies.
package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

type node struct {
	next  *node
	value int
	data  [48]byte
}

func main() {
	runtime.GOMAXPROCS(2)
	const total = 200 << 20
	const window = 20000
	live := make([][]byte, window)
	allocated, n := 0, 0
	var sum uint64
	for allocated < total {
		size := 32 + n%200
		b := make([]byte, size)
		for i := range b {
			b[i] = byte(n + i)
		}
		live[n%window] = b
		allocated += size
		n++
		if n%250000 == 0 {
			runtime.GC()
		}
	}
	for _, b := range live {
		for _, c := range b {
			sum += uint64(c)
		}
	}
	fmt.Printf("allocated %d MB in %d objects, live checksum %d\n", allocated>>20, n, sum)

	// linked lists that become garbage
	var keep *node
	for round := 0; round < 20; round++ {
		var head *node
		for i := 0; i < 20000; i++ {
			head = &node{next: head, value: i}
		}
		if round == 19 {
			keep = head
		}
	}
	count, vsum := 0, 0
	for p := keep; p != nil; p = p.next {
		count++
		vsum += p.value
	}
	fmt.Printf("list: %d nodes, sum %d\n", count, vsum)

	m := make(map[int]string)
	for i := 0; i < 100000; i++ {
		m[i] = fmt.Sprint(i * 7)
	}
	for i := 0; i < 100000; i += 2 {
		delete(m, i)
	}
	fmt.Printf("map: %d entries, m[99999] = %s\n", len(m), m[99999])

	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("GC cycles >= 10: %v\n", ms.NumGC >= 10)
	fmt.Printf("total allocated >= 200 MB: %v\n", ms.TotalAlloc >= total)
	fmt.Printf("heap in use < 100 MB: %v\n", ms.HeapInuse < 100<<20)
	runtime.KeepAlive(live)
	runtime.KeepAlive(m)
}
