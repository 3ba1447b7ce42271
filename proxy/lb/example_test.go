package lb_test

import (
	"fmt"

	"github.com/pingora-go/pingora-go/proxy/lb"
)

func Example() {
	// One State per peer address, kept by the proxy across reloads.
	a, b, c := lb.NewState(), lb.NewState(), lb.NewState()
	backends := []lb.Backend{
		{Addr: "10.0.0.1:80", Weight: 5, State: a},
		{Addr: "10.0.0.2:80", Weight: 1, State: b},
		{Addr: "10.0.0.3:80", Weight: 1, State: c},
	}
	sel, err := lb.New("round_robin", backends, lb.Options{})
	if err != nil {
		panic(err)
	}
	var order []string
	for range 7 {
		i, _ := sel.Select("")
		order = append(order, backends[i].Addr)
	}
	fmt.Println(order)

	// A retry goes to a peer not yet tried; an unhealthy one is skipped.
	b.SetHealthy(false)
	var tried lb.Tried
	for {
		i, ok := sel.SelectExcluding("", tried)
		if !ok {
			break
		}
		fmt.Println("try", backends[i].Addr)
		tried.Add(i)
	}

	// With every peer down, Select fails and SelectAny still answers.
	a.SetHealthy(false)
	c.SetHealthy(false)
	_, ok := sel.Select("")
	i, _ := sel.SelectAny("")
	fmt.Println(ok, backends[i].Addr)
	// Output:
	// [10.0.0.1:80 10.0.0.1:80 10.0.0.2:80 10.0.0.1:80 10.0.0.3:80 10.0.0.1:80 10.0.0.1:80]
	// try 10.0.0.1:80
	// try 10.0.0.3:80
	// false 10.0.0.1:80
}
