#!/usr/bin/env bash
# boot-test.sh: boot the lnm appliance image in QEMU (TCG + OVMF, no KVM) between two network
# namespaces made here, and check it with real clients. Nothing leaves the machine: the VM's
# two NICs are TAP devices moved into the namespaces, addresses are 198.18.0.0/15, and there is
# no user-mode (slirp) networking.
#
#   vm-images/boot-test.sh --image bin/image/lnm-amd64.raw --deb bin/lnm_V_amd64.deb --lnm bin/lnm
#
#   lnmimg-dev  (device)    br0 198.18.3.x by DHCP ── taps ── south0 198.18.3.1/24 ┐
#                                                                                 │ the VM
#   lnmimg-inet (internet)  br0 198.18.5.1/24 ─────── tapn ── north0 198.18.5.2/24 ┘
#                           dnsmasq (.test names → 198.18.5.1), openssl s_server :443
#
# Boot 1 runs the device checks, then the VM powers off and the test reads the state partition
# from the disk image (debugfs, no mount). Boot 2 finds a newer lnm .deb on the settings
# partition (the documented upgrade path), installs it, and the test checks that the lease and
# the audit log of boot 1 are still there. Each check prints PASS or FAIL on its own line; the
# script exits 1 if any failed. Logs (serial consoles, dnsmasq, the extracted state) stay in
# --logs.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
image="" deb="" lnm="" logs=bin/image-test
boot_timeout=${BOOT_TIMEOUT:-900}
while [ $# -gt 0 ]; do
	case "$1" in
	--image) image=$2; shift 2 ;;
	--deb) deb=$2; shift 2 ;;
	--lnm) lnm=$2; shift 2 ;;
	--logs) logs=$2; shift 2 ;;
	*) echo "boot-test.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
[ -f "$image" ] || { echo "boot-test.sh: --image: no raw image at '$image' (make image)" >&2; exit 2; }
[ -f "$deb" ] || { echo "boot-test.sh: --deb: no lnm .deb at '$deb' (for the upgrade on boot 2)" >&2; exit 2; }
[ -x "$lnm" ] || { echo "boot-test.sh: --lnm: no lnm binary at '$lnm' (to read the audit log)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "boot-test.sh: must run as root (network namespaces, TAP devices)" >&2; exit 2; }
for cmd in qemu-system-x86_64 busybox dnsmasq openssl dig curl debugfs mcopy sfdisk dpkg-deb ip; do
	command -v "$cmd" >/dev/null || { echo "boot-test.sh: $cmd missing: make image-deps" >&2; exit 2; }
done
ovmf_code=/usr/share/OVMF/OVMF_CODE_4M.fd
ovmf_vars=/usr/share/OVMF/OVMF_VARS_4M.fd
[ -f "$ovmf_code" ] || { echo "boot-test.sh: $ovmf_code missing: apt-get install ovmf" >&2; exit 2; }

mkdir -p "$logs"
logs=$(realpath "$logs")
lnm=$(realpath "$lnm")
work=$(mktemp -d "${TMPDIR:-/var/tmp}/lnm-boot-test.XXXXXX")
ns_dev=lnmimg-dev-$$ ns_inet=lnmimg-inet-$$ ns_vm=lnmimg-vm-$$
box_south=198.18.3.1 box_north=198.18.5.2 inet=198.18.5.1 probe=198.18.3.50
pids=()
qemu_pid=""

cleanup() {
	set +e
	[ -z "$qemu_pid" ] || kill "$qemu_pid" 2>/dev/null
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	sleep 0.5
	for ns in "$ns_dev" "$ns_inet" "$ns_vm"; do ip netns del "$ns" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

in_dev() { ip netns exec "$ns_dev" "$@"; }
in_inet() { ip netns exec "$ns_inet" "$@"; }

# ---- checks ---------------------------------------------------------------------------------

passed=() failed=()
check() { # check NAME DESCRIPTION COMMAND...: run COMMAND, record PASS or FAIL
	local name=$1 what=$2
	shift 2
	if "$@" >"$logs/check-$name.log" 2>&1; then
		passed+=("$name"); printf 'PASS  %-22s %s\n' "$name" "$what"
	else
		failed+=("$name"); printf 'FAIL  %-22s %s (see %s)\n' "$name" "$what" "$logs/check-$name.log"
	fi
}

# ---- the disk: a copy of the image with the test's settings --------------------------------

t_start=$(date +%s)
cp --sparse=always "$image" "$work/disk.raw"
cp "$ovmf_vars" "$work/OVMF_VARS.fd"

# part_offset NAME: byte offset and size of the partition named NAME in disk.raw
part() {
	sfdisk -d "$work/disk.raw" | awk -v n="name=\"$1\"" '
		index($0, n) { for (i = 1; i <= NF; i++) { gsub(",", "", $i) }
			for (i = 1; i <= NF; i++) { if ($i == "start=") s = $(i + 1); if ($i == "size=") z = $(i + 1) }
			print s * 512, z * 512 }'
}
read -r settings_off _ < <(part lnm-settings)
read -r state_off state_size < <(part lnm-state)

cat >"$work/settings.conf" <<EOF
# boot-test.sh: a top-level box between the device namespace and the "internet" namespace
hostname   = lnm-test
level      = 4
north      = $box_north/24
south      = $box_south/24
upstream   = $inet
proxy      = 443
allow      = *.azure.test
dhcp_range = 198.18.3.100 198.18.3.199
dhcp_lease = 1h
metrics    = on
EOF
mcopy -o -i "$work/disk.raw@@$settings_off" "$work/settings.conf" ::/settings.conf

# ---- the internet: DNS for .test names and a TLS server, certificate from a test CA ---------

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=lnm-boot-test-ca \
	-keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=api.azure.test \
	-keyout "$work/srv.key" -out "$work/srv.csr" 2>/dev/null
printf 'subjectAltName=DNS:api.azure.test,DNS:www.example.test\n' >"$work/srv.ext"
openssl x509 -req -in "$work/srv.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial -days 2 \
	-extfile "$work/srv.ext" -out "$work/srv.pem" 2>/dev/null

# Each side's address lives on a bridge that outlasts the VM; a boot adds its TAP to it.
for ns in "$ns_dev" "$ns_inet" "$ns_vm"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip -n "$ns_inet" link add br0 type bridge
ip -n "$ns_inet" addr add "$inet/24" dev br0
ip -n "$ns_inet" link set br0 up
ip -n "$ns_dev" link add br0 address 00:1b:1b:aa:bb:07 type bridge
ip -n "$ns_dev" link set br0 up

# ---- the VM ---------------------------------------------------------------------------------

# boot N: start QEMU (taps opened in the VM namespace, then moved where they belong) and wait
# until the box answers DNS from the device side. Prints the boot time.
boot() {
	local n=$1 t0 t1
	rm -f "$work/monitor"
	mkfifo "$work/monitor"
	ip -n "$ns_vm" tuntap add dev tapn mode tap
	ip -n "$ns_vm" tuntap add dev taps mode tap
	t0=$(date +%s)
	ip netns exec "$ns_vm" qemu-system-x86_64 -accel tcg -machine q35 -cpu max -smp 2 -m 1024 \
		-nodefaults -display none -no-user-config \
		-drive if=pflash,format=raw,readonly=on,file="$ovmf_code" \
		-drive if=pflash,format=raw,file="$work/OVMF_VARS.fd" \
		-drive file="$work/disk.raw",format=raw,if=virtio \
		-netdev tap,id=north,ifname=tapn,script=no,downscript=no \
		-device virtio-net-pci,netdev=north,mac=52:54:00:00:00:01,addr=0x3 \
		-netdev tap,id=south,ifname=taps,script=no,downscript=no \
		-device virtio-net-pci,netdev=south,mac=52:54:00:00:00:02,addr=0x4 \
		-serial file:"$logs/serial-boot$n.log" -monitor stdio \
		<"$work/monitor" >"$logs/qemu-boot$n.log" 2>&1 &
	qemu_pid=$!
	exec 7>"$work/monitor" # holds the monitor's stdin open; `echo cmd >&7` talks to it
	# Move the taps once QEMU holds them (both /dev/net/tun fds open).
	local i
	for i in $(seq 100); do
		[ "$(ls -l /proc/$qemu_pid/fd 2>/dev/null | grep -c /dev/net/tun)" -ge 2 ] && break
		sleep 0.1
	done
	ip -n "$ns_vm" link set tapn netns "$ns_inet"
	ip -n "$ns_vm" link set taps netns "$ns_dev"
	ip -n "$ns_inet" link set tapn master br0 up
	ip -n "$ns_dev" link set taps master br0 up
	# Probe from a fixed address outside the DHCP range, removed again before the checks.
	in_dev ip addr add "$probe/24" dev br0
	until in_dev dig +time=2 +tries=1 @"$box_south" api.azure.test >/dev/null 2>&1; do
		if ! kill -0 "$qemu_pid" 2>/dev/null; then echo "boot $n: QEMU exited (see $logs/qemu-boot$n.log)"; return 1; fi
		if [ $(($(date +%s) - t0)) -gt "$boot_timeout" ]; then echo "boot $n: box not answering DNS after ${boot_timeout}s"; return 1; fi
		sleep 3
	done
	t1=$(date +%s)
	in_dev ip addr del "$probe/24" dev br0
	echo "boot $n: the box answers DNS $((t1 - t0)) s after QEMU started (TCG, no KVM)"
	boot_times+=("$((t1 - t0))")
}

# poweroff: ACPI power button (systemd shuts down cleanly, the audit log is flushed).
poweroff() {
	local i
	echo system_powerdown >&7
	for i in $(seq 240); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.5; done
	if kill -0 "$qemu_pid" 2>/dev/null; then echo "poweroff: no clean shutdown in 120 s, quitting QEMU"; echo quit >&7; sleep 2; fi
	exec 7>&-
	wait "$qemu_pid" 2>/dev/null || true
	qemu_pid=""
	ip -n "$ns_inet" link del tapn
	ip -n "$ns_dev" link del taps
}

# read_state DIR: copy the state partition out of the disk image, without mounting it.
read_state() {
	rm -rf "$1"
	mkdir -p "$1"
	dd if="$work/disk.raw" of="$work/state.img" bs=1M iflag=skip_bytes,count_bytes \
		skip="$state_off" count="$state_size" status=none
	debugfs -R "rdump /lnm $1" "$work/state.img" >/dev/null 2>&1
	debugfs -R "rdump /etc-lnm $1" "$work/state.img" >/dev/null 2>&1
}

# ---- the device's clients -------------------------------------------------------------------

cat >"$work/udhcpc.sh" <<'EOF'
#!/bin/sh
# udhcpc event script: record the lease, configure the address (no route: the device has none)
case "$1" in
bound|renew)
	env | grep -E '^(ip|subnet|mask|dns|router|lease|serverid|hostname|domain)=' >"$LEASE_FILE"
	ip -4 addr flush dev "$interface"
	ip addr add "$ip/${mask:-24}" dev "$interface"
	;;
esac
EOF
chmod 0755 "$work/udhcpc.sh"

dhcp_lease() { # dhcp_lease FILE: a lease from the box whose DNS server is the box, no router
	LEASE_FILE=$1 in_dev busybox udhcpc -f -q -n -t 8 -T 3 -i br0 -x hostname:plc-07 -s "$work/udhcpc.sh"
	cat "$1"
	grep -qx "dns=$box_south" "$1" && ! grep -q '^router=' "$1"
}
dig_allowed() { [ "$(in_dev dig +short @"$box_south" api.azure.test A | tee /dev/stderr)" = "$box_south" ]; }
# Outputs are read whole, then matched: `grep -q` in a pipe under pipefail would fail the
# check whenever it closes the pipe before the writer is done.
dig_denied() {
	local out
	out=$(in_dev dig @"$box_south" www.example.test A) && echo "$out" && grep 'status: NXDOMAIN' <<<"$out"
}
https_through_box() {
	local out
	out=$(in_dev curl -sS --max-time 20 --cacert "$work/ca.pem" --resolve "api.azure.test:443:$box_south" \
		https://api.azure.test/) && grep -m1 s_server <<<"$out"
}
# The device tries to use the box as a router to reach the internet namespace: TCP and DNS.
no_direct_path() {
	in_dev ip route replace default via "$box_south"
	! in_dev curl -sS --max-time 8 --cacert "$work/ca.pem" --resolve "api.azure.test:443:$inet" https://api.azure.test/ &&
		! in_dev dig +time=3 +tries=1 @"$inet" api.azure.test
}
denied_through_box() {
	! in_dev curl -sS --max-time 20 --cacert "$work/ca.pem" --resolve "www.example.test:443:$box_south" https://www.example.test/
}
south_mgmt_closed() { ! in_dev curl -sS --max-time 5 "http://$box_south:9153/metrics"; }
north_metrics() {
	local out
	out=$(in_inet curl -sS --max-time 10 "http://$box_north:9153/metrics") && grep '^server_uptime' <<<"$out"
}
# device_records DIR: the audit records in DIR's log that name the device plc-07
device_records() {
	local out
	out=$("$lnm" audit query --dir "$1/lnm/audit" --json) && grep '"device":"plc-07"' <<<"$out"
}
audit_names_device() { device_records "$1" | grep '"kind":"dns"' | grep api.azure.test; }
lease_stored() { grep -rl --exclude-dir=audit plc-07 "$1/lnm"; }
# audit_kept: every record of boot 1 that names the device is still in the log after boot 2.
audit_kept() {
	local before after
	local id='^\{"seq":[0-9]+,"time":"[^"]*"' # a record's identity: its sequence number and time
	before=$(device_records "$logs/state-boot1" | grep -oE "$id") || return 1
	after=$(device_records "$logs/state-boot2" | grep -oE "$id") || return 1
	echo "$(wc -l <<<"$before") records of boot 1 name the device, $(wc -l <<<"$after") after boot 2"
	[ -n "$before" ] && [ -z "$(grep -vxF -f <(echo "$after") <<<"$before")" ]
}
# same_lease: after the reboot the box gives the device the address it leased before.
same_lease() {
	dhcp_lease "$work/lease2" || return 1
	echo "boot 1: $(grep '^ip=' "$work/lease1")  boot 2: $(grep '^ip=' "$work/lease2")"
	[ "$(grep '^ip=' "$work/lease1")" = "$(grep '^ip=' "$work/lease2")" ]
}

# ---- run ------------------------------------------------------------------------------------

boot_times=()
# Started as plain commands (not through in_inet) so that $! is the server's own PID.
ip netns exec "$ns_inet" dnsmasq --keep-in-foreground --no-resolv --no-hosts --bind-interfaces --listen-address="$inet" \
	--user=nobody --group=nogroup --pid-file= --log-queries --log-facility="$logs/dnsmasq.log" \
	--address=/azure.test/"$inet" --address=/example.test/"$inet" &
pids+=($!)
ip netns exec "$ns_inet" openssl s_server -accept "$inet:443" -cert "$work/srv.pem" -key "$work/srv.key" -www -quiet \
	>"$logs/s_server.log" 2>&1 &
pids+=($!)
boot 1

echo "== boot 1: a device on the south side"
check dhcp-lease "the device gets a lease by DHCP whose DNS server is the box, no router" dhcp_lease "$work/lease1"
if [ -z "$(in_dev ip -4 -o addr show dev br0)" ]; then
	in_dev ip addr add "$probe/24" dev br0 # no lease: the other checks still run
fi
check dns-allowed "dig gets the box's address for an allowed name" dig_allowed
check dns-denied "dig gets NXDOMAIN for a name not on the list" dig_denied
check https-through-box "curl fetches a page through the box, certificate verified" https_through_box
check denied-through-box "a name not on the list does not connect through the box" denied_through_box
check no-direct-path "the device cannot reach the internet namespace (box is no router)" no_direct_path
check south-mgmt-closed "metrics are closed on the south side" south_mgmt_closed
check north-metrics "metrics answer on the north side (enabled in settings)" north_metrics
poweroff
read_state "$logs/state-boot1"
check audit-device "the audit record names the device by its DHCP host name" audit_names_device "$logs/state-boot1"
check lease-stored "the lease is on the state partition" lease_stored "$logs/state-boot1"

echo "== boot 2: upgrade to a newer lnm .deb from the settings partition"
ver=$(dpkg-deb -f "$deb" Version)
dpkg-deb -R "$deb" "$work/debroot"
sed -i "s/^Version: .*/Version: $ver+boottest1/" "$work/debroot/DEBIAN/control"
dpkg-deb --root-owner-group -b "$work/debroot" "$work/lnm_${ver}+boottest1_amd64.deb" >/dev/null
# A plain file name: mtools (4.0.33) drops the long name of some names with '~' and dots,
# such as lnm_0.0~git157.a6ec780-1_amd64.deb; any lnm_*.deb is taken, by its version inside.
cp "$work/lnm_${ver}+boottest1_amd64.deb" "$work/lnm_boottest_amd64.deb"
mcopy -o -i "$work/disk.raw@@$settings_off" "$work/lnm_boottest_amd64.deb" ::/upgrade/
mdir -i "$work/disk.raw@@$settings_off" ::/upgrade
boot 2
check upgrade-installed "boot 2 installed the newer lnm from LNMSETTINGS:/upgrade" \
	grep "upgrade: lnm $ver+boottest1 installed" "$logs/serial-boot2.log"
in_dev ip -4 addr flush dev br0
check dhcp-after-reboot "after reboot and upgrade the device gets the same address again" same_lease
check dns-after-reboot "the box answers an allowed name after the reboot and upgrade" dig_allowed
poweroff
read_state "$logs/state-boot2"
check audit-kept "boot 1's audit records are still there after reboot and upgrade" audit_kept
check lease-kept "the lease is still on the state partition after reboot and upgrade" lease_stored "$logs/state-boot2"

t_end=$(date +%s)
echo "== boot times: ${boot_times[*]} s (QEMU start to DNS answered); whole test $((t_end - t_start)) s"
echo "== ${#passed[@]} passed, ${#failed[@]} failed${failed:+: ${failed[*]}}"
[ "${#failed[@]}" = 0 ]
