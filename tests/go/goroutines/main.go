// Goroutines across OS threads: channels, sync.WaitGroup, mutexes, select, threads
// locked to goroutines, and asynchronous preemption of a loop without function calls
// (which needs signals sent to a running thread). Prints only deterministic results.
package main

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func fanOut() {
	const workers, jobs = 16, 2000
	in := make(chan int)
	out := make(chan int, 64)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range in {
				out <- j * j
			}
		}()
	}
	go func() {
		for j := 1; j <= jobs; j++ {
			in <- j
		}
		close(in)
	}()
	go func() { wg.Wait(); close(out) }()
	sum, n := 0, 0
	for v := range out {
		sum += v
		n++
	}
	fmt.Printf("fan-out: %d results, sum of squares %d\n", n, sum)
}

func mutexCounter() {
	var mu sync.Mutex
	var wg sync.WaitGroup
	counter := 0
	var atomicCounter int64
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				mu.Lock()
				counter++
				mu.Unlock()
				atomic.AddInt64(&atomicCounter, 2)
				if i%100 == 0 {
					runtime.Gosched()
				}
			}
		}()
	}
	wg.Wait()
	fmt.Printf("mutex counter: %d, atomic counter: %d\n", counter, atomicCounter)
}

func pingPong() {
	ping, pong := make(chan int), make(chan int)
	go func() {
		for v := range ping {
			pong <- v + 1
		}
		close(pong)
	}()
	v := 0
	for i := 0; i < 2000; i++ {
		ping <- v
		v = <-pong
	}
	close(ping)
	_, open := <-pong
	fmt.Printf("ping-pong: %d round trips, value %d, closed %v\n", 2000, v, !open)
}

func selectLoop() {
	a, b, quit := make(chan int), make(chan string), make(chan struct{})
	go func() {
		for i := 0; i < 50; i++ {
			if i%2 == 0 {
				a <- i
			} else {
				b <- fmt.Sprint(i)
			}
		}
		close(quit)
	}()
	ints, strs := 0, 0
	for done := false; !done; {
		select {
		case v := <-a:
			ints += v
		case s := <-b:
			strs += len(s)
		case <-quit:
			done = true
		}
	}
	fmt.Printf("select: ints %d, string bytes %d\n", ints, strs)
}

func lockedThreads() {
	// each goroutine locked to its own OS thread, all blocked at once
	const n = 8
	var wg sync.WaitGroup
	start := make(chan struct{})
	results := make([]int, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			<-start
			s := 0
			for k := 0; k <= i*1000; k++ {
				s += k
			}
			results[i] = s
		}(i)
	}
	time.Sleep(20 * time.Millisecond)
	close(start)
	wg.Wait()
	fmt.Printf("locked threads: %v\n", results)
}

func blockingSyscalls() {
	// goroutines blocked in raw read(2)s hold their threads: the runtime starts more
	const n = 32
	var fds [n][2]int
	for i := range fds {
		if err := syscall.Pipe(fds[i][:]); err != nil {
			panic(err)
		}
	}
	var wg sync.WaitGroup
	results := make([]int, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			buf := make([]byte, 8)
			k, _ := syscall.Read(fds[i][0], buf)
			results[i] = k * int(buf[0])
		}(i)
	}
	time.Sleep(50 * time.Millisecond)
	for i := 0; i < n; i++ {
		syscall.Write(fds[i][1], []byte{byte(i + 1)})
	}
	wg.Wait()
	sum := 0
	for i := range results {
		sum += results[i]
		syscall.Close(fds[i][0])
		syscall.Close(fds[i][1])
	}
	fmt.Printf("blocking reads in %d goroutines: sum %d\n", n, sum)
}

//go:noinline
func spin(stop *int32) int {
	n := 0
	for atomic.LoadInt32(stop) == 0 {
		n++
	}
	return n
}

func preemption() {
	// with one P, a goroutine spinning without calls must be preempted asynchronously
	// (SIGURG to its thread) for the main goroutine to run and for the GC to stop the world
	old := runtime.GOMAXPROCS(1)
	var stop int32
	done := make(chan bool)
	go func() {
		spin(&stop)
		done <- true
	}()
	time.Sleep(30 * time.Millisecond)
	runtime.GC()
	atomic.StoreInt32(&stop, 1)
	fmt.Printf("preemption: the spinning goroutine was preempted and stopped: %v\n", <-done)
	runtime.GOMAXPROCS(old)
}

func main() {
	runtime.GOMAXPROCS(4)
	fanOut()
	mutexCounter()
	pingPong()
	selectLoop()
	lockedThreads()
	blockingSyscalls()
	preemption()
	fmt.Println("goroutines: done")
}
