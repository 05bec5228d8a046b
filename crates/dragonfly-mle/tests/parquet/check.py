#!/usr/bin/env python3
"""Reads a parquet:// output directory with pyarrow and DuckDB (from PyPI) and checks it.

  check.py full DIR EVENTS.jsonl[.gz]   every row equals an input event, value for value
                                        (pyarrow), per-event_type counts (DuckDB over the
                                        Hive partitions), the manifest, a time-range query
  check.py readable DIR                 every *.parquet opens and reads (pyarrow and DuckDB);
                                        the manifest lists exactly those files; the most
                                        (leaf) columns a file has
Prints one JSON object on stdout (what it found); exits non-zero with a message on a mismatch.
"""
import collections, datetime, glob, gzip, json, os, re, sys

import duckdb
import pyarrow.parquet as pq


def fail(msg):
    sys.exit(f"check.py: {msg}")


def files_of(d):
    return sorted(glob.glob(os.path.join(d, "**", "*.parquet"), recursive=True))


def decode_text_columns(value, field):
    """JSON-text columns (field metadata dragonfly:json) back to values, typed timestamps
    (dragonfly:timestamp_offset) back to their text; recurse."""
    import pyarrow as pa
    if value is None:
        return None
    md = field.metadata or {}
    if md.get(b"dragonfly:json"):
        return json.loads(value)
    off = md.get(b"dragonfly:timestamp_offset")
    if off:
        # a typed timestamp (UTC) back to its text: shifted by the offset it was written with
        off = off.decode()
        minutes = (int(off[1:3]) * 60 + int(off[3:5])) * (-1 if off[0] == "-" else 1)
        local = value + datetime.timedelta(minutes=minutes)
        return local.strftime("%Y-%m-%dT%H:%M:%S.%f") + off
    t = field.type
    if pa.types.is_struct(t):
        return {t.field(i).name: decode_text_columns(value.get(t.field(i).name), t.field(i))
                for i in range(t.num_fields)}
    if pa.types.is_list(t):
        return [decode_text_columns(v, t.value_field) for v in value]
    return value


def norm(v):
    """Absent and null alike; integral doubles as integers (a column widened to doubles)."""
    if isinstance(v, dict):
        return {k: norm(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [norm(x) for x in v]
    if isinstance(v, float) and v.is_integer() and abs(v) < 2**53:
        return int(v)
    return v


def canon(v):
    return json.dumps(norm(v), sort_keys=True, ensure_ascii=False)


OVERFLOW = "dragonfly_overflow"


def read_rows(path):
    """Rows as the events they were: JSON-text columns decoded, and the fields that had no
    room as columns (the dragonfly_overflow object) put back at the top."""
    t = pq.read_table(path, partitioning=None)
    rows = t.to_pylist()
    fields = {f.name: f for f in t.schema}
    out = []
    for r in rows:
        row = {k: decode_text_columns(v, fields[k]) for k, v in r.items()}
        extra = row.pop(OVERFLOW, None)
        if extra:
            for k, v in extra.items():
                row.setdefault(k, v)
        out.append(row)
    return out, t


def check_index(f):
    """Every column chunk has statistics, a column index and an offset index (the page index).
    One exception, arrow-rs's: a column under a list whose values in the row group are all
    null gets no column index (it tells a null page by rows, not values); its statistics
    (the null count) and offset index are still there."""
    md = pq.ParquetFile(f).metadata
    for g in range(md.num_row_groups):
        rg = md.row_group(g)
        for c in range(rg.num_columns):
            col = rg.column(c)
            all_null_in_list = (".list." in col.path_in_schema and col.is_stats_set
                                and not col.statistics.has_min_max
                                and col.statistics.null_count == col.num_values)
            if not (col.is_stats_set and col.has_offset_index
                    and (col.has_column_index or all_null_in_list)):
                fail(f"{f}: row group {g} column {col.path_in_schema} lacks statistics or the page index")


def check_manifest(d, files, stats):
    m = []
    mdir = os.path.join(d, "_manifest")
    for name in sorted(os.listdir(mdir)):
        if name.startswith("."):
            continue
        day = json.load(open(os.path.join(mdir, name)))
        if not (name.startswith("date=") and name.endswith(".json")) or not day:
            fail(f"manifest file {name}: not a date's list, or empty")
        for e in day:
            date = e["partition"].get("date")
            # a date partition that is a date (not __HIVE_DEFAULT_PARTITION__) is the file's
            if date and re.fullmatch(r"\d{4}-\d{2}-\d{2}", date) and name != f"date={date}.json":
                fail(f"{e['path']} is listed under {name}")
        m += day
    listed = {e["path"]: e for e in m}
    rel = {os.path.relpath(f, d) for f in files}
    if set(listed) != rel:
        fail(f"manifest lists {sorted(set(listed) - rel)[:5]} without files and lacks {sorted(rel - set(listed))[:5]}")
    for f in files:
        e = listed[os.path.relpath(f, d)]
        n = pq.ParquetFile(f).metadata.num_rows
        if e["rows"] != n:
            fail(f"manifest says {e['rows']} rows for {f}, the file has {n}")
        if e["bytes"] != os.path.getsize(f):
            fail(f"manifest size of {f} is wrong")
        if f in stats:
            lo, hi = stats[f]
            if (e["min_timestamp"], e["max_timestamp"]) != (lo, hi):
                fail(f"manifest time range of {f}: {e['min_timestamp']}..{e['max_timestamp']}, rows say {lo}..{hi}")
    return m


def utc(ts):
    t = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%f%z")
    return t.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def full(d, events_path):
    op = gzip.open if events_path.endswith(".gz") else open
    with op(events_path, "rt", encoding="utf-8") as f:
        events = [json.loads(l) for l in f if l.strip()]
    want = collections.Counter(canon(e) for e in events)
    files = files_of(d)
    got = collections.Counter()
    stats = {}
    for f in files:
        check_index(f)
        rows, _ = read_rows(f)
        part = dict(p.split("=", 1) for p in os.path.relpath(f, d).split(os.sep)[:-1])
        ts = []
        for r in rows:
            got[canon(r)] += 1
            if part.get("event_type") not in (None, r.get("event_type")):
                fail(f"{f}: a row of event_type {r.get('event_type')} in partition {part}")
            if "date" in part and r.get("timestamp", "")[:10] != part["date"]:
                fail(f"{f}: a row of {r.get('timestamp')} in partition {part}")
            if r.get("timestamp"):
                ts.append(utc(r["timestamp"]))
        if ts:
            stats[f] = (min(ts), max(ts))
    if got != want:
        missing = list((want - got).elements())[:2]
        extra = list((got - want).elements())[:2]
        fail(f"rows differ from the events: {sum((want - got).values())} missing, e.g. {missing}; "
             f"{sum((got - want).values())} unexpected, e.g. {extra}")
    # DuckDB: the whole directory as one table, Hive partitions, schemas merged by name
    con = duckdb.connect()
    q = (f"SELECT event_type, count(*) FROM read_parquet('{d}/**/*.parquet', hive_partitioning=true, "
         f"union_by_name=true) GROUP BY 1")
    duck = dict(con.execute(q).fetchall())
    per_type = collections.Counter(e.get("event_type") for e in events)
    if duck != dict(per_type):
        fail(f"DuckDB counts {duck} != input {dict(per_type)}")
    # DuckDB reads nested fields and flow_id exactly
    sample = [e for e in events if e.get("event_type") == "dns" and "flow_id" in e][:50]
    for e in sample:
        n = con.execute(f"SELECT count(*) FROM read_parquet('{d}/event_type=dns/**/*.parquet', union_by_name=true) "
                        f"WHERE flow_id = ? AND timestamp = ?", [e["flow_id"], e["timestamp"]]).fetchone()[0]
        if n < 1:
            fail(f"DuckDB finds no dns row with flow_id {e['flow_id']} at {e['timestamp']}")
    m = check_manifest(d, files, stats)
    # the documented way to read the whole manifest
    listed = con.execute(f"SELECT count(*) FROM read_json('{d}/_manifest/*.json')").fetchone()[0]
    if listed != len(files):
        fail(f"DuckDB reads {listed} manifest rows for {len(files)} files")
    # a time range: the manifest's entries that overlap it hold every event in it
    all_ts = sorted(utc(e["timestamp"]) for e in events if "timestamp" in e)
    lo, hi = all_ts[len(all_ts) // 3], all_ts[len(all_ts) // 3 + len(all_ts) // 10]
    chosen = [os.path.join(d, e["path"]) for e in m
              if e["min_timestamp"] and e["min_timestamp"] <= hi and e["max_timestamp"] >= lo]
    in_range = sum(1 for t in all_ts if lo <= t <= hi)
    n = con.execute("SELECT count(*) FROM read_parquet(?, union_by_name=true) "
                    "WHERE timestamp::TIMESTAMPTZ BETWEEN ?::TIMESTAMPTZ AND ?::TIMESTAMPTZ",
                    [chosen, lo, hi]).fetchone()[0]
    if n != in_range:
        fail(f"a time range through the manifest found {n} events, the input has {in_range}")
    print(json.dumps({"files": len(files), "rows": sum(got.values()), "duckdb": duck,
                      "range_files": len(chosen), "range_rows": n,
                      "bytes": sum(os.path.getsize(f) for f in files)}))


def readable(d):
    files = files_of(d)
    total = 0
    columns = 0
    seqs = collections.Counter()
    for f in files:
        t = pq.read_table(f, partitioning=None)
        total += t.num_rows
        columns = max(columns, pq.ParquetFile(f).metadata.num_columns)
        if "seq" in t.column_names:
            seqs.update(x for x in t.column("seq").to_pylist() if x is not None)
    n = 0
    if files:
        n = duckdb.connect().execute(
            f"SELECT count(*) FROM read_parquet('{d}/**/*.parquet', union_by_name=true)").fetchone()[0]
    if n != total:
        fail(f"DuckDB read {n} rows, pyarrow {total}")
    check_manifest(d, files, {})
    # temporary files of unfinished Parquet files (not the lock files)
    hidden = [p for p in glob.glob(os.path.join(d, "**", ".*.tmp"), recursive=True)
              if os.path.basename(p).startswith((".part-", ".compact-"))]
    print(json.dumps({"files": len(files), "rows": total, "columns": columns,
                      "distinct_seqs": len(seqs), "seqs": sorted(seqs),
                      "max_seq": max(seqs) if seqs else None, "hidden": len(hidden)}))


if __name__ == "__main__":
    if sys.argv[1] == "full":
        full(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "readable":
        readable(sys.argv[2])
    else:
        fail(f"unknown action {sys.argv[1]}")
