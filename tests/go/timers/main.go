// time.Sleep, timers, tickers, time.After in select, context deadlines. Elapsed times
// are printed as yes/no checks against generous bounds.
package main

import (
	"context"
	"fmt"
	"sync"
	"time"
)

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func main() {
	t0 := time.Now()
	time.Sleep(50 * time.Millisecond)
	d := time.Since(t0)
	fmt.Printf("sleep 50ms: >= 50ms %s, < 2s %s\n", yes(d >= 50*time.Millisecond), yes(d < 2*time.Second))

	// many goroutines sleeping at once
	var wg sync.WaitGroup
	t0 = time.Now()
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			time.Sleep(time.Duration(10+i%10) * time.Millisecond)
		}(i)
	}
	wg.Wait()
	d = time.Since(t0)
	fmt.Printf("100 sleeping goroutines: >= 19ms %s, < 2s %s\n", yes(d >= 19*time.Millisecond), yes(d < 2*time.Second))

	timer := time.NewTimer(time.Hour)
	fmt.Printf("stop an armed timer: %v\n", timer.Stop())
	timer.Reset(20 * time.Millisecond)
	t0 = time.Now()
	<-timer.C
	fmt.Printf("reset timer fired after >= 20ms: %s\n", yes(time.Since(t0) >= 20*time.Millisecond))
	fmt.Printf("stop a fired timer: %v\n", timer.Stop())

	fired := make(chan string, 1)
	time.AfterFunc(10*time.Millisecond, func() { fired <- "AfterFunc ran" })
	fmt.Println(<-fired)

	ticker := time.NewTicker(10 * time.Millisecond)
	t0 = time.Now()
	ticks := 0
	for range ticker.C {
		ticks++
		if ticks == 10 {
			break
		}
	}
	ticker.Stop()
	d = time.Since(t0)
	fmt.Printf("ticker: %d ticks, >= 90ms %s, < 3s %s\n", ticks, yes(d >= 90*time.Millisecond), yes(d < 3*time.Second))

	never := make(chan int)
	select {
	case <-never:
		fmt.Println("select: wrong case")
	case <-time.After(15 * time.Millisecond):
		fmt.Println("select: time.After won")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Millisecond)
	defer cancel()
	<-ctx.Done()
	fmt.Printf("context: %v\n", ctx.Err())

	mono := time.Now()
	wall := time.Now().Round(0)
	fmt.Printf("monotonic and wall clocks agree within 1s: %s\n", yes(wall.Sub(mono) < time.Second && mono.Sub(wall) < time.Second))
	fmt.Printf("year plausible: %s\n", yes(time.Now().Year() >= 2023))
}
