module github.com/vmmd/vmmd

go 1.26
