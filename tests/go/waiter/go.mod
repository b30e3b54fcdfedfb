module kmtest/waiter

go 1.19
