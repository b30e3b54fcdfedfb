module kmtest/gc

go 1.19
