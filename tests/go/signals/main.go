// os/signal: the program sends itself SIGUSR1 and SIGTERM with syscall.Kill and
// receives them on channels; signal.Ignore; then, with no Notify left, SIGTERM kills the
// process (the Go runtime restores the default action and re-raises it).
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	c := make(chan os.Signal, 4)
	signal.Notify(c, syscall.SIGUSR1, syscall.SIGTERM)
	pid := os.Getpid()

	syscall.Kill(pid, syscall.SIGUSR1)
	fmt.Printf("received %v\n", <-c)
	syscall.Kill(pid, syscall.SIGTERM)
	fmt.Printf("received %v\n", <-c)

	// a thread-directed signal from another goroutine's thread
	done := make(chan bool)
	go func() {
		syscall.Kill(pid, syscall.SIGUSR1)
		done <- true
	}()
	<-done
	select {
	case s := <-c:
		fmt.Printf("received %v sent from another goroutine\n", s)
	case <-time.After(5 * time.Second):
		fmt.Println("timed out waiting for SIGUSR1")
	}

	signal.Ignore(syscall.SIGUSR2)
	syscall.Kill(pid, syscall.SIGUSR2)
	time.Sleep(20 * time.Millisecond)
	fmt.Printf("ignored SIGUSR2, still running; SIGUSR2 ignored: %v\n", signal.Ignored(syscall.SIGUSR2))

	select {
	case s := <-c:
		fmt.Printf("unexpected %v\n", s)
	default:
		fmt.Println("nothing else pending")
	}

	if len(os.Args) > 1 && os.Args[1] == "die" {
		signal.Reset(syscall.SIGTERM)
		fmt.Println("SIGTERM with no Notify: the process dies")
		syscall.Kill(pid, syscall.SIGTERM)
		time.Sleep(5 * time.Second)
		fmt.Println("still alive (wrong)")
	}
}
