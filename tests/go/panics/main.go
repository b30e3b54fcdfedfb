// Panics: recovered runtime errors, including the ones that come from hardware faults
// (a nil pointer dereference is a SIGSEGV the Go runtime turns into a panic by editing
// the signal context), and an unrecovered panic writing to a nil map (exit status 2).
package main

import (
	"fmt"
	"os"
)

type T struct{ x int }

//go:noinline
func deref(p *T) int { return p.x }

//go:noinline
func divide(a, b int) int { return a / b }

//go:noinline
func index(s []int, i int) int { return s[i] }

func try(what string, f func()) {
	defer func() {
		r := recover()
		fmt.Printf("%s: recovered %v\n", what, r)
	}()
	f()
}

func main() {
	mode := "recover"
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	switch mode {
	case "recover":
		try("nil pointer", func() { deref(nil) })
		try("nil pointer again", func() { deref(nil) })
		try("divide by zero", func() { divide(1, 0) })
		try("index out of range", func() { index([]int{1, 2, 3}, 5) })
		try("explicit panic", func() { panic("boom") })
		var m map[string]int
		try("nil map", func() { m["x"] = 1 })
		fmt.Println("all recovered")
	case "nilmap":
		var m map[string]int
		fmt.Println("writing to a nil map")
		m["x"] = 1
	case "nilptr":
		fmt.Println("dereferencing nil")
		fmt.Println(deref(nil))
	}
}
