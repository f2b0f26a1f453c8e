#!/usr/bin/env bash
# build.sh: the lnm appliance disk image (Debian 12, amd64, GPT + UEFI), raw and qcow2.
#
#   vm-images/build.sh --deb bin/lnm_VERSION_amd64.deb [--out bin/image] [--settings FILE]
#
# Runs as root on Debian 12 from Debian packages only: mmdebstrap builds the root tree in a
# directory, mkfs.ext4 -d / mkfs.vfat + mcopy turn directories into partition images, sfdisk
# writes the GPT, dd places the partitions. No loop devices, no mounts, no KVM.
#
# Disk layout (vm-images/README.md explains each):
#   1 lnm-esp       FAT32  128 MiB  systemd-boot, the kernel and initrd
#   2 lnm-root      ext4   sized    Debian + lnm, mounted read-only
#   3 lnm-settings  FAT    16 MiB   LNMSETTINGS: settings.conf (and upgrade/*.deb), edited by people
#   4 lnm-state     ext4   STATE_MB LNM-STATE: /var/lib/lnm (audit log, leases), /etc/lnm, ssh keys
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
deb=""
out=bin/image
settings="$here/settings.example.conf"
mirror=${MIRROR:-http://deb.debian.org/debian}
security=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
state_mb=${STATE_MB:-512}
keep_tree=""

while [ $# -gt 0 ]; do
	case "$1" in
	--deb) deb=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--settings) settings=$2; shift 2 ;;
	--tree) keep_tree=$2; shift 2 ;; # keep the root tree here; reuse it if present (overlay work)
	*) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
[ -n "$deb" ] && [ -f "$deb" ] || { echo "build.sh: --deb FILE: no lnm .deb at '$deb' (run make deb)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "build.sh: must run as root (mmdebstrap, device nodes in the tree)" >&2; exit 2; }
for cmd in mmdebstrap mkfs.ext4 mkfs.vfat mcopy mmd sfdisk qemu-img; do
	command -v "$cmd" >/dev/null || { echo "build.sh: $cmd missing: apt-get install mmdebstrap e2fsprogs dosfstools mtools fdisk qemu-utils" >&2; exit 2; }
done

# Fixed partition UUIDs: the kernel command line and fstab name them, and every box built from
# the same image is the same box until its settings say otherwise.
readonly ESP_UUID=3b1d0a51-6c2e-4a53-9f1c-6c6e6d000001
readonly ROOT_UUID=3b1d0a51-6c2e-4a53-9f1c-6c6e6d000002
readonly SETTINGS_UUID=3b1d0a51-6c2e-4a53-9f1c-6c6e6d000003
readonly STATE_UUID=3b1d0a51-6c2e-4a53-9f1c-6c6e6d000004
readonly TYPE_ESP=C12A7328-F81F-11D2-BA4B-00A0C93EC93B
readonly TYPE_ROOT_X86_64=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709
readonly TYPE_BASIC_DATA=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7 # FAT that Windows and macOS mount, so people can edit settings.conf
readonly TYPE_LINUX_DATA=0FC63DAF-8483-4772-8E79-3D69D8477DE4

deb=$(realpath "$deb")
version=$(dpkg-deb -f "$deb" Version)
mkdir -p "$out"
out=$(realpath "$out")
work=$(mktemp -d "${TMPDIR:-/var/tmp}/lnm-image.XXXXXX")
# Never rm -rf a tree that still has something mounted in it (an interrupted mmdebstrap).
trap 'findmnt -rno TARGET | grep -q "^$work" || rm -rf "$work"' EXIT
tree=${keep_tree:-$work/root}

t0=$(date +%s)
if [ -n "$keep_tree" ] && [ -f "$tree/etc/os-release" ]; then
	echo "build.sh: reusing the root tree in $tree (--tree); only the overlay is applied again"
else
	rm -rf "$tree"
	echo "build.sh: lnm $version: mmdebstrap into $tree"
	# minbase plus what an appliance needs; the lnm .deb brings its own dependencies.
	# update-initramfs is a no-op while packages install (each kernel module package would
	# rebuild the initrd) and runs once at the end.
	mmdebstrap --variant=minbase --mode=root --format=directory \
		--hook-dir=/usr/share/mmdebstrap/hooks/file-mirror-automount \
		--include=linux-image-amd64,initramfs-tools,systemd,systemd-sysv,udev,dbus,systemd-boot-efi \
		--include=nftables,ca-certificates,iproute2,openssh-server,kmod,procps,adduser,zstd \
		--include="$deb" \
		--essential-hook='chroot "$1" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs && ln -s /bin/true "$1/usr/sbin/update-initramfs"' \
		--customize-hook='rm "$1/usr/sbin/update-initramfs" && chroot "$1" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs' \
		--customize-hook='chroot "$1" update-initramfs -c -k all' \
		bookworm "$tree" \
		"deb $mirror bookworm main" "deb $mirror bookworm-updates main" "deb $security bookworm-security main"
fi
t1=$(date +%s)
echo "build.sh: root tree in $((t1 - t0)) s ($(du -sm "$tree" | cut -f1) MiB)"

# The appliance's own files and units, applied without a chroot.
cp -a "$here/rootfs/." "$tree/"
chmod 0755 "$tree/usr/lib/lnm-appliance/settings"
systemctl --root="$tree" --quiet enable lnm-settings.service nftables.service systemd-networkd.service
systemctl --root="$tree" --quiet disable ssh.service
systemctl --root="$tree" --quiet mask systemd-random-seed.service apt-daily.timer apt-daily-upgrade.timer
rm -f "$tree"/etc/ssh/ssh_host_*  # per box, made at first boot on the state partition
mkdir -p "$tree/state" "$tree/var/lib/lnm" "$tree/boot/efi"
mkdir -p "$tree/var/lib/systemd/linger" # logind's StateDirectory: it cannot make it on a read-only root
: >"$tree/etc/machine-id"          # systemd makes one per boot on the read-only root

# mmdebstrap leaves the build host's hostname and resolv.conf out; the box's own come from its
# settings (hostname) and lnm.conf (upstream), so these are placeholders.
echo lnm-appliance >"$tree/etc/hostname"
echo "# lnm resolves through the upstream in /etc/lnm/lnm.conf" >"$tree/etc/resolv.conf"

kernel=$(ls "$tree"/boot/vmlinuz-* | sort -V | tail -1)
initrd=$(ls "$tree"/boot/initrd.img-* | sort -V | tail -1)

# fstab: root read-only; the state partition carries everything that must survive reboots and
# upgrades, bound where the software expects it; logs and scratch space live in memory.
cat >"$tree/etc/fstab" <<EOF
# lnm appliance (vm-images/build.sh)
PARTUUID=$ROOT_UUID   /             ext4   ro,noatime                          0 1
PARTUUID=$STATE_UUID  /state        ext4   noatime,nodev,nosuid,x-systemd.growfs 0 2
/state/lnm            /var/lib/lnm  none   bind,x-systemd.requires-mounts-for=/state 0 0
/state/etc-lnm        /etc/lnm      none   bind,x-systemd.requires-mounts-for=/state 0 0
tmpfs                 /tmp          tmpfs  mode=1777,nosuid,nodev               0 0
tmpfs                 /var/tmp      tmpfs  mode=1777,nosuid,nodev               0 0
tmpfs                 /var/log      tmpfs  mode=0755,nosuid,nodev               0 0
EOF

# ESP: systemd-boot on the removable-media path (no NVRAM entry needed), one boot entry.
esp=$work/esp
mkdir -p "$esp/EFI/BOOT" "$esp/loader/entries" "$esp/lnm"
cp "$tree/usr/lib/systemd/boot/efi/systemd-bootx64.efi" "$esp/EFI/BOOT/BOOTX64.EFI"
cp "$kernel" "$esp/lnm/vmlinuz"
cp "$initrd" "$esp/lnm/initrd.img"
printf 'default lnm.conf\ntimeout 0\nconsole-mode keep\n' >"$esp/loader/loader.conf"
cat >"$esp/loader/entries/lnm.conf" <<EOF
title   lnm appliance $version
linux   /lnm/vmlinuz
initrd  /lnm/initrd.img
options root=PARTUUID=$ROOT_UUID ro console=tty0 console=ttyS0,115200 panic=10
EOF

# State: the deb's /etc/lnm as the starting point of the writable copy bound over it.
state=$work/state
mkdir -p "$state/lnm" "$state/etc-lnm" "$state/ssh"
cp -a "$tree/etc/lnm/." "$state/etc-lnm/"
chown --reference="$tree/etc/lnm" "$state/etc-lnm"  # the package's owner and mode: lnm writes lnm.allow there
chmod --reference="$tree/etc/lnm" "$state/etc-lnm"

# Settings: the example file, which people edit on any computer before first boot.
settingsdir=$work/settings
mkdir -p "$settingsdir/upgrade"
cp "$settings" "$settingsdir/settings.conf"

mib=$((1024 * 1024))
esp_mb=128
settings_mb=16
root_mb=$(($(du -sm "$tree" | cut -f1) * 5 / 4 + 128))

mkfs.vfat -F 32 -n LNM-ESP -C "$work/esp.img" $((esp_mb * 1024)) >/dev/null
mcopy -s -i "$work/esp.img" "$esp"/* ::/
mkfs.vfat -n LNMSETTINGS -C "$work/settings.img" $((settings_mb * 1024)) >/dev/null
mcopy -s -i "$work/settings.img" "$settingsdir"/* ::/
mkfs.ext4 -q -L LNM-ROOT -d "$tree" "$work/root.img" "${root_mb}M" >/dev/null
mkfs.ext4 -q -L LNM-STATE -d "$state" "$work/state.img" "${state_mb}M" >/dev/null

raw=$out/lnm-amd64.raw
total_mb=$((1 + esp_mb + root_mb + settings_mb + state_mb + 1))
rm -f "$raw"
truncate -s "${total_mb}M" "$raw"
sfdisk -q "$raw" <<EOF
label: gpt
first-lba: 2048
start=1MiB, size=${esp_mb}MiB, type=$TYPE_ESP, uuid=$ESP_UUID, name=lnm-esp
size=${root_mb}MiB, type=$TYPE_ROOT_X86_64, uuid=$ROOT_UUID, name=lnm-root
size=${settings_mb}MiB, type=$TYPE_BASIC_DATA, uuid=$SETTINGS_UUID, name=lnm-settings
size=${state_mb}MiB, type=$TYPE_LINUX_DATA, uuid=$STATE_UUID, name=lnm-state
EOF
place() { # place IMAGE START_MIB
	dd if="$1" of="$raw" bs=1M seek="$2" conv=notrunc,sparse status=none
}
place "$work/esp.img" 1
place "$work/root.img" $((1 + esp_mb))
place "$work/settings.img" $((1 + esp_mb + root_mb))
place "$work/state.img" $((1 + esp_mb + root_mb + settings_mb))

qemu-img convert -f raw -O qcow2 "$raw" "$out/lnm-amd64.qcow2"
echo "$version" >"$out/VERSION"
t2=$(date +%s)
echo "build.sh: $raw ($((total_mb)) MiB, $(du -m "$raw" | cut -f1) MiB allocated) and $out/lnm-amd64.qcow2 ($(du -m "$out/lnm-amd64.qcow2" | cut -f1) MiB)"
echo "build.sh: build time $((t2 - t0)) s (mmdebstrap $((t1 - t0)) s, partitions $((t2 - t1)) s)"
