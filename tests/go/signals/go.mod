module kmtest/signals

go 1.19
