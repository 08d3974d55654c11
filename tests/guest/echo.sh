#!/bin/sh
# Guest test: read one line from the console and echo it back.
stty -echo 2>/dev/null
echo "ECHO-READY"
if IFS= read -r line; then
	echo "ECHO:$line"
else
	echo "ECHO-EOF"
	exit 1
fi
