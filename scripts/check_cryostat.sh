#!/usr/bin/env bash
# Check a KATCP instrument from a shell script with katcp-cmd (one request per call).
#
# Usage: scripts/check_cryostat.sh HOST:PORT
#
# katcp-cmd prints the reply informs and the reply as KATCP wire lines and exits with
# 0 for an "ok" reply, 1 for "fail"/"invalid", 2 when it cannot connect or gets no reply
# in time.  This script exits 0 when the cryostat answers and is not idle, 1 otherwise.
set -u
addr=${1:-127.0.0.1:7147}

# 1. Is an instrument there?  ?watchdog is the cheapest request every server has.
katcp-cmd --timeout 2 "$addr" watchdog >/dev/null
case $? in
    0) echo "alive: $addr" ;;
    2) echo "no instrument at $addr" >&2; exit 1 ;;
    *) echo "$addr answers, but refuses ?watchdog" >&2; exit 1 ;;
esac

# 2. Read sensors.  A #sensor-value inform is: timestamp count name status value.
read_sensor() {
    katcp-cmd "$addr" sensor-value "$1" | awk '$1 == "#sensor-value" { print $6 }'
}
echo "temperature: $(read_sensor temperature) K, state: $(read_sensor state)"

# 3. A refused request: exit status 1, and the reply says why (KATCP escapes \_ for spaces).
if ! reply=$(katcp-cmd --no-informs "$addr" set-setpoint 1000); then
    echo "refused as expected: ${reply//\\_/ }"
fi

# 4. Decide: an idle cryostat (compressor off, drifting to room temperature) is a problem.
if [ "$(read_sensor state)" = idle ]; then
    echo "cryostat is idle" >&2
    exit 1
fi
echo "cryostat OK"
