#!/bin/sh
# Guest test: virtio-vsock (the host runs the other ends, see
# tests/lab/virtio-tests.sh): echo two concurrent host-initiated
# connections on port 5000, then read 4 MiB from host port 6000, then read
# from host port 6001 whose server vanishes mid-stream.
vsock-tool serve 5000 2 || exit 1
vsock-tool sink 2 6000 || exit 1
vsock-tool sink 2 6001 || exit 1
