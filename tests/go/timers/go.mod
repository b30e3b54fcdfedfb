module kmtest/timers

go 1.19
