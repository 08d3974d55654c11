#!/bin/sh
# Guest test: report MemTotal in kB.
kb=$(sed -n 's/^MemTotal: *\([0-9]*\) kB$/\1/p' /proc/meminfo)
echo "MEMKB=$kb"
[ -n "$kb" ]
