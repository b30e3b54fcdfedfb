module kmtest/panics

go 1.19
