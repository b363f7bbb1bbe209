#!/usr/bin/env python3
"""Write walk-tunnel.nmea: a walk through Changji with a tunnel in it.

One epoch per second from 2026-07-01 08:00:00 UTC, each a GPRMC, a GPGGA and a
GPGSA sentence (the GGA's HDOP and the GSA's DOPs give gpsd its error
estimate):

- epochs  0..=14: a fix, walking north-east at about 1.4 m/s;
- epochs 15..=29: the tunnel: no fix (RMC status V, GGA quality 0, GSA mode 1);
- epochs 30..=44: a fix again, the walk going on from the tunnel's far end.

tests/tests/gps_e2e.rs replays it with gpsfake and knows these numbers. Run
`python3 tests/gps/make_walk.py > tests/gps/walk-tunnel.nmea` to write it again;
the file is checked in so that the test needs nothing but gpsfake.
"""

import sys

START_H, START_M, START_S = 8, 0, 0
DATE = "010726"  # ddmmyy: 2026-07-01
LAT0, LON0 = 44.0110000, 87.3000000  # degrees N, E
STEP_LAT, STEP_LON = 0.0000090, 0.0000125  # per second: ~1.0 m north, ~1.0 m east
FIX_A = range(0, 15)
TUNNEL = range(15, 30)
FIX_B = range(30, 45)


def checksum(body: str) -> str:
    c = 0
    for ch in body:
        c ^= ord(ch)
    return f"{c:02X}"


def sentence(body: str) -> str:
    return f"${body}*{checksum(body)}\r\n"


def hms(t: int) -> str:
    s = START_H * 3600 + START_M * 60 + START_S + t
    return f"{s // 3600:02d}{s % 3600 // 60:02d}{s % 60:02d}.00"


def ddmm(deg: float, width: int) -> str:
    d = int(deg)
    m = (deg - d) * 60
    return f"{d:0{width}d}{m:07.4f}"


def epoch(t: int) -> str:
    time = hms(t)
    if t in TUNNEL:
        return (
            sentence(f"GPRMC,{time},V,,,,,,,{DATE},,,N")
            + sentence(f"GPGGA,{time},,,,,0,00,,,M,,M,,")
            + sentence("GPGSA,A,1,,,,,,,,,,,,,,,")
        )
    lat = LAT0 + STEP_LAT * t
    lon = LON0 + STEP_LON * t
    la, lo = ddmm(lat, 2), ddmm(lon, 3)
    return (
        sentence(f"GPRMC,{time},A,{la},N,{lo},E,2.7,45.0,{DATE},,,A")
        + sentence(f"GPGGA,{time},{la},N,{lo},E,1,08,0.9,580.0,M,-28.0,M,,")
        + sentence("GPGSA,A,3,01,03,06,11,14,17,19,22,,,,,1.6,0.9,1.3")
    )


def main() -> None:
    out = sys.stdout
    for t in list(FIX_A) + list(TUNNEL) + list(FIX_B):
        out.write(epoch(t))


if __name__ == "__main__":
    main()
