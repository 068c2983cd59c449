module github.com/clipd/clipd

go 1.26
