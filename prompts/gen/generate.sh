#!/usr/bin/env bash
# generate.sh — regenerate the embedded prompt recordings of the prompts package.
#
# What it does
#   For every locale folder prompts/<locale>/ that holds a catalog.txt (lines "ID|text"), it
#   synthesises each text with flite, then with sox:
#     1. trims leading silence (under 0.5 % of full scale) and trailing silence (under
#        0.2 %, lower so that the soft release of a final consonant is kept),
#     2. band-limits to the telephone band (high-pass 250 Hz, low-pass 3400 Hz),
#     3. resamples to 8000 Hz, mono, signed 16-bit PCM (what prompts.Load accepts),
#     4. normalises the peak to -3 dBFS and adds a 5 ms fade at each end (no clicks),
#   and writes prompts/<locale>/<ID>.wav. The WAVs are committed, so building the
#   project needs no TTS engine; run this only when catalog.txt or the voice changes.
#
# Voice
#   flite "slt" (CMU ARCTIC, US English female, 16 kHz clustergen). Of the voices in
#   Debian's flite (kal, kal16, awb, rms, slt) it is the most natural and the clearest
#   after telephone band-limiting; kal is a robotic diphone voice, awb has a Scottish
#   accent, rms is a lower male voice that loses more in the 300-3400 Hz band.
#   Override with VOICE=rms gen/generate.sh.
#
# Requirements (Debian/Ubuntu)
#   apt-get install -y flite sox
#
# Usage
#   prompts/gen/generate.sh            # all locales
#   prompts/gen/generate.sh en         # one locale
#
# Idempotent: the output depends only on catalog.txt, the voice and the tool versions
# (sox runs repeatable, without dither), so running it twice yields identical files.
# A WAV whose ID is no longer in catalog.txt is reported, not deleted.
set -euo pipefail

VOICE="${VOICE:-slt}"
RATE=8000

for tool in flite sox; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "generate.sh: $tool not found; run: apt-get install -y flite sox" >&2
		exit 1
	fi
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

if [[ $# -gt 0 ]]; then
	locales=("$@")
else
	locales=()
	for cat in "$root"/*/catalog.txt; do
		locales+=("$(basename "$(dirname "$cat")")")
	done
fi

for locale in "${locales[@]}"; do
	dir="$root/$locale"
	catalog="$dir/catalog.txt"
	if [[ ! -f "$catalog" ]]; then
		echo "generate.sh: no catalog at $catalog" >&2
		exit 1
	fi
	declare -A seen=()
	while IFS='|' read -r id text || [[ -n "$id" ]]; do
		[[ -z "$id" || "$id" == \#* ]] && continue
		if [[ -z "${text:-}" ]]; then
			echo "generate.sh: $catalog: prompt $id has no text" >&2
			exit 1
		fi
		seen[$id]=1
		raw="$tmp/$id.raw.wav"
		flite -voice "$VOICE" -t "$text" -o "$raw"
		# -R: repeatable; -D: no dither, so reruns are byte-identical.
		sox -R -D -V1 "$raw" -r "$RATE" -c 1 -b 16 -e signed-integer "$tmp/$id.wav" \
			silence 1 0.02 0.5% reverse silence 1 0.02 0.2% reverse \
			highpass 250 lowpass 3400 \
			rate -v "$RATE" \
			norm -3 \
			fade t 0.005 reverse fade t 0.005 reverse
		mv "$tmp/$id.wav" "$dir/$id.wav"
		printf '%s/%-10s %6.2f s  %s\n' "$locale" "$id" "$(soxi -D "$dir/$id.wav")" "$text"
	done <"$catalog"
	for wav in "$dir"/*.wav; do
		[[ -e "$wav" ]] || continue
		id="$(basename "$wav" .wav)"
		if [[ -z "${seen[$id]:-}" ]]; then
			echo "generate.sh: warning: $wav is not in $catalog" >&2
		fi
	done
	unset seen
done
