module kmtest/goroutines

go 1.19
