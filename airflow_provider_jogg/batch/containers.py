"""Media durations read from container headers, with the standard library and a few small reads.

Each reader takes a :class:`Source` (seek + read on an open binary file, so that an object-storage
file is read in ranges) and returns seconds, or ``None`` when the header does not say. Nothing here
reads a whole file: the largest read is one tail window (:data:`TAIL_WINDOW`) or one MP4 ``moov``
child header at a time.

Formats: WAV (RIFF, RF64, WAVE_FORMAT_EXTENSIBLE), MP3 (ID3v2 skipped; Xing/Info or VBRI frame
count, else constant bitrate from the first frame and the file size), MP4/M4A/MOV (``moov/mvhd``,
``moov`` anywhere, 64-bit box sizes, fragmented files through ``mvex/mehd``), FLAC (STREAMINFO),
Ogg Vorbis/Opus/FLAC (the last page's granule position), AAC ADTS (frame sizes of the first
:data:`HEAD_WINDOW` bytes extrapolated to the file size: an estimate, as ffprobe's own for ADTS).
"""

from __future__ import annotations

import struct
from typing import BinaryIO

#: bytes read at once from the start of the audio (first MP3/ADTS frames, their VBR headers)
HEAD_WINDOW = 16 * 1024
#: bytes read from the end of an Ogg file: a page is at most 65,307 bytes, so its header is in there
TAIL_WINDOW = 64 * 1024 + 512
#: MP4 box types that can start a file (``moov`` is searched among the top-level boxes)
_MP4_TOP = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid", b"styp"}
_UNKNOWN_GRANULE = 0xFFFFFFFFFFFFFFFF


class Source:
    """Positioned reads on an open binary file; ``size`` is the file's length."""

    def __init__(self, stream: BinaryIO, size: int) -> None:
        self._stream = stream
        self.size = size

    def read_at(self, offset: int, count: int) -> bytes:
        if offset < 0 or offset >= self.size or count <= 0:
            return b""
        self._stream.seek(offset)
        return self._stream.read(min(count, self.size - offset))


def header_duration(source: Source) -> float | None:
    """The duration in seconds that the file's header gives, ``None`` if unknown or not a format here."""
    start = _skip_id3v2(source)
    head = source.read_at(start, 12)
    if len(head) < 12:
        return None
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return _wav(source)
    if head[:4] == b"fLaC":
        return _flac_streaminfo(source, start + 4)
    if head[:4] == b"OggS":
        return _ogg(source)
    if head[4:8] in _MP4_TOP:
        return _mp4(source)
    if head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        # frame sync: layer bits 00 are AAC ADTS, anything else MPEG audio (MP3 and its layers)
        return _adts(source, start) if head[1] & 0x06 == 0 else _mp3(source, start)
    return None


def _positive(seconds: float) -> float | None:
    return seconds if seconds > 0 else None


# ---------------------------------------------------------------------------------------------- WAV
#: PCM, IEEE float, WAVE_FORMAT_EXTENSIBLE: the data size over the byte rate is exact
_WAV_PLAIN = (0x0001, 0x0003, 0xFFFE)


def _wav(source: Source) -> float | None:
    offset, tag, byte_rate, rate, data_size, data_at, samples, rf64 = 12, 0, 0, 0, None, 0, None, None
    while offset + 8 <= source.size:
        header = source.read_at(offset, 8)
        if len(header) < 8:
            break
        kind, size = header[:4], struct.unpack("<I", header[4:])[0]
        if kind == b"ds64":  # RF64: the real sizes, 64-bit (the 32-bit fields say 0xFFFFFFFF)
            body = source.read_at(offset + 8, 24)
            if len(body) == 24:
                rf64 = struct.unpack("<QQQ", body)
        elif kind == b"fmt ":
            body = source.read_at(offset + 8, 16)
            if len(body) < 16:
                return None
            tag, _channels, rate, byte_rate = struct.unpack("<HHII", body[:12])
        elif kind == b"fact":
            body = source.read_at(offset + 8, 4)
            samples = struct.unpack("<I", body)[0] if len(body) == 4 else None
        elif kind == b"data":
            data_at, data_size = offset + 8, size
            if rf64 is not None and size == 0xFFFFFFFF:
                data_size = rf64[1]
            break
        offset += 8 + size + (size & 1)  # chunks are padded to an even size
    if data_size is None or not byte_rate:
        return None
    # a writer that could not seek back (a pipe) leaves 0 or 0xFFFFFFFF: the data runs to the end
    available = source.size - data_at
    if data_size in (0, 0xFFFFFFFF) or data_size > available:
        data_size = available
    if tag not in _WAV_PLAIN and samples and rate and samples != 0xFFFFFFFF:
        return _positive(samples / rate)  # compressed WAV: the fact chunk counts the samples
    return _positive(data_size / byte_rate)


# ---------------------------------------------------------------------------------------------- MP3
def _skip_id3v2(source: Source) -> int:
    """Where the audio starts: after any ID3v2 tags (some files carry more than one)."""
    offset = 0
    while True:
        tag = source.read_at(offset, 10)
        if len(tag) < 10 or tag[:3] != b"ID3" or any(b & 0x80 for b in tag[6:10]):
            return offset
        size = (tag[6] << 21) | (tag[7] << 14) | (tag[8] << 7) | tag[9]  # syncsafe
        offset += 10 + size + (10 if tag[5] & 0x10 else 0)  # 0x10: a footer follows


_MP3_BITRATES = {  # kbit/s by (MPEG-1?, layer), index 1..14
    (True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_BITRATES[(False, 3)] = _MP3_BITRATES[(False, 2)]
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _mp3_frame(header: bytes) -> tuple[int, int, int, int, bool] | None:
    """``(frame length, samples per frame, sample rate, bit rate, mono)`` of a frame header, or None."""
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return None
    version, layer_bits = (header[1] >> 3) & 3, (header[1] >> 1) & 3
    bitrate_index, rate_index = header[2] >> 4, (header[2] >> 2) & 3
    if version == 1 or layer_bits == 0 or bitrate_index in (0, 15) or rate_index == 3:
        return None  # reserved values; free-format bit rate (0) has no length to read
    layer, mpeg1 = 4 - layer_bits, version == 3
    bitrate = _MP3_BITRATES[(mpeg1, layer)][bitrate_index - 1] * 1000
    rate, padding = _MP3_RATES[version][rate_index], (header[2] >> 1) & 1
    if layer == 1:
        return (12 * bitrate // rate + padding) * 4, 384, rate, bitrate, header[3] >> 6 == 3
    samples = 1152 if layer == 2 or mpeg1 else 576
    return samples // 8 * bitrate // rate + padding, samples, rate, bitrate, header[3] >> 6 == 3


def _mp3(source: Source, start: int) -> float | None:
    head = source.read_at(start, HEAD_WINDOW)
    frame = _mp3_frame(head[:4])
    if frame is None:
        return None
    length, samples, rate, bitrate, mono = frame
    # a frame is only trusted when the next one starts where it ends (a sync word can be a fluke)
    following = head[length : length + 4]
    if len(following) == 4 and _mp3_frame(following) is None:
        return None
    mpeg1 = (head[1] >> 3) & 3 == 3
    side_info = (17 if mono else 32) if mpeg1 else (9 if mono else 17)
    xing_at = 4 + side_info
    xing = head[xing_at : xing_at + 12]
    if xing[:4] in (b"Xing", b"Info") and len(xing) == 12 and struct.unpack(">I", xing[4:8])[0] & 1:
        total = struct.unpack(">I", xing[8:12])[0] * samples
        return _positive((total - _lame_gap(head, xing_at)) / rate)
    vbri = head[36:54]
    if vbri[:4] == b"VBRI" and len(vbri) == 18:
        return _positive(struct.unpack(">I", vbri[14:18])[0] * samples / rate)
    end = source.size
    if source.read_at(end - 128, 3) == b"TAG":  # ID3v1 at the end: not audio
        end -= 128
    return _positive((end - start) * 8 / bitrate)


def _lame_gap(head: bytes, xing_at: int) -> int:
    """Samples the encoder added (LAME tag: delay + padding), which players and ffprobe leave out."""
    flags = struct.unpack(">I", head[xing_at + 4 : xing_at + 8])[0]
    # the optional fields present: frames, bytes, the 100-byte seek table, quality
    lame_at = xing_at + 8 + sum(size for bit, size in ((1, 4), (2, 4), (4, 100), (8, 4)) if flags & bit)
    tag = head[lame_at : lame_at + 24]
    if len(tag) < 24 or tag[:4] not in (b"LAME", b"Lavf", b"Lavc"):  # LAME's layout, ffmpeg's too
        return 0
    delays = int.from_bytes(tag[21:24], "big")  # 12 bits delay, 12 bits padding
    return (delays >> 12) + (delays & 0xFFF)


# ---------------------------------------------------------------------------------------------- MP4
def _boxes(source: Source, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """``(type, body offset, box end)`` of the boxes between ``start`` and ``end``, headers only."""
    found = []
    offset = start
    while offset + 8 <= end:
        header = source.read_at(offset, 16)
        if len(header) < 8:
            break
        size, kind = struct.unpack(">I4s", header[:8])
        body = offset + 8
        if size == 1:  # 64-bit size follows the type
            if len(header) < 16:
                break
            size, body = struct.unpack(">Q", header[8:16])[0], offset + 16
        elif size == 0:  # the box runs to the end of its parent (of the file, at the top level)
            size = end - offset
        if size < body - offset:
            break  # a box smaller than its header: not an MP4 box
        found.append((kind, body, min(offset + size, end)))
        offset += size
    return found


def _mp4(source: Source) -> float | None:
    moov = next(((body, end) for kind, body, end in _boxes(source, 0, source.size) if kind == b"moov"), None)
    if moov is None:
        return None  # no moov (a truncated download, or a fragment)
    children = {kind: (body, end) for kind, body, end in _boxes(source, *moov)}
    if b"mvhd" not in children:
        return None
    body = source.read_at(children[b"mvhd"][0], 32)
    if len(body) < 20:
        return None
    if body[0] == 1:  # version 1: 64-bit times and duration
        if len(body) < 32:
            return None
        timescale, duration = struct.unpack(">IQ", body[20:32])
    else:
        timescale, duration = struct.unpack(">II", body[12:20])
    if b"mvex" in children:
        # a fragmented file: mvhd covers only the samples in moov (often none); the movie extends
        # header, when there is one, says how long the whole movie runs
        mehd = [b for kind, b, _end in _boxes(source, *children[b"mvex"]) if kind == b"mehd"]
        data = source.read_at(mehd[0], 12) if mehd else b""
        width = 8 if data[:1] == b"\x01" else 4  # version 1: 64-bit fragment duration
        if len(data) < 4 + width:
            return None  # only the fragments know: ffprobe's job
        duration = int.from_bytes(data[4 : 4 + width], "big")
    if not timescale or duration in (0xFFFFFFFF, _UNKNOWN_GRANULE):
        return None
    return _positive(duration / timescale)


# --------------------------------------------------------------------------------------------- FLAC
def _flac_streaminfo(source: Source, offset: int) -> float | None:
    block = source.read_at(offset, 4 + 18)
    if len(block) < 22 or block[0] & 0x7F != 0:  # STREAMINFO is always the first metadata block
        return None
    bits = int.from_bytes(block[14:22], "big")  # rate 20 bits, channels 3, depth 5, samples 36
    rate, total = bits >> 44, bits & ((1 << 36) - 1)
    return _positive(total / rate) if rate else None  # 0 samples: the encoder did not know


# ---------------------------------------------------------------------------------------------- Ogg
def _ogg(source: Source) -> float | None:
    first = source.read_at(0, 27 + 255 + 64)
    if len(first) < 28:
        return None
    serial, segments = first[14:18], first[26]
    packet = first[27 + segments :]
    pre_skip = 0
    if packet[:7] == b"\x01vorbis" and len(packet) >= 16:
        rate = struct.unpack("<I", packet[12:16])[0]
    elif packet[:8] == b"OpusHead" and len(packet) >= 12:
        rate, pre_skip = 48000, struct.unpack("<H", packet[10:12])[0]  # Opus granules are always 48 kHz
    elif packet[:5] == b"\x7fFLAC" and len(packet) >= 13 + 22:
        bits = int.from_bytes(packet[13 + 14 : 13 + 22], "big")
        rate = bits >> 44
    else:
        return None  # Speex, Theora, ...: ffprobe's job
    if not rate:
        return None
    tail_at = max(0, source.size - TAIL_WINDOW)
    tail = source.read_at(tail_at, TAIL_WINDOW)
    # the last page of this stream with a granule position (-1 marks a page where no packet ends)
    at = tail.rfind(b"OggS")
    while at >= 0:
        page = tail[at : at + 27]
        if len(page) == 27 and page[4] == 0 and page[14:18] == serial:
            granule = struct.unpack("<Q", page[6:14])[0]
            if granule != _UNKNOWN_GRANULE:
                return _positive((granule - pre_skip) / rate)
        at = tail.rfind(b"OggS", 0, at)
    return None


# ---------------------------------------------------------------------------------------------- AAC
_ADTS_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)


def _adts(source: Source, start: int) -> float | None:
    head = source.read_at(start, HEAD_WINDOW)
    offset, frames, rate = 0, 0, 0
    while offset + 7 <= len(head):
        header = head[offset : offset + 7]
        if header[0] != 0xFF or header[1] & 0xF6 != 0xF0:
            break
        rate_index = (header[2] >> 2) & 0xF
        length = ((header[3] & 3) << 11) | (header[4] << 3) | (header[5] >> 5)
        if rate_index >= len(_ADTS_RATES) or length < 7 or offset + length > len(head):
            break
        rate = _ADTS_RATES[rate_index]
        frames += (header[6] & 3) + 1  # raw data blocks in the frame, 1024 samples each
        offset += length
    if frames < 2 or not rate:
        return None
    # no header gives an ADTS stream's length: extrapolate the first frames' size to the whole file
    return _positive((source.size - start) / offset * frames * 1024 / rate)
