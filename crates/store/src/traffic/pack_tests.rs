use super::{Entry, Traffic, pack, unpack, unpack_where};

fn record(at: i64, client: &str, path: &str, status: i64) -> Traffic {
    Traffic {
        at,
        kind: crate::TrafficKind::Http,
        client: client.into(),
        method: "GET".into(),
        host: "app.example.com".into(),
        path: path.into(),
        status,
        bytes_in: 120,
        bytes_out: 1_234,
        duration_ms: 2,
        ..Traffic::default()
    }
}

fn entry(t: &Traffic) -> Entry {
    Entry {
        at: t.at,
        client: t.client.clone(),
        method: t.method.clone(),
        host: t.host.clone(),
        path: t.path.clone(),
        status: t.status,
        bytes_in: t.bytes_in,
        bytes_out: t.bytes_out,
        duration_ms: t.duration_ms,
        error: t.error.clone(),
        failures: t.failures,
    }
}

/// The oldest form: a JSON array of nine values per record.
fn oldest_form(entries: &[Entry]) -> String {
    let rows: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            serde_json::json!([
                e.at,
                e.client,
                e.method,
                e.host,
                e.path,
                e.status,
                e.bytes_in,
                e.bytes_out,
                e.duration_ms
            ])
        })
        .collect();
    serde_json::to_string(&rows).expect("oldest form")
}

/// The nine-integer form (`[2, T0, STRINGS, INTS]`) that builds of
/// 2026-12-01 wrote, as they wrote it.
fn fixed_form(rows: &[Traffic], t0: i64) -> String {
    let mut strings: Vec<&str> = Vec::new();
    let mut ints: Vec<i64> = Vec::new();
    for t in rows {
        ints.push(t.at - t0);
        for text in [&t.client, &t.method, &t.host, &t.path] {
            let place = strings.iter().position(|s| *s == text).unwrap_or_else(|| {
                strings.push(text);
                strings.len() - 1
            });
            ints.push(i64::try_from(place).expect("small"));
        }
        ints.extend([t.status, t.bytes_in, t.bytes_out, t.duration_ms]);
    }
    format!(
        "[2,{t0},{},{}]",
        serde_json::to_string(&strings).expect("strings"),
        serde_json::to_string(&ints).expect("ints")
    )
}

/// A block as the edge makes it under load: 50 visitor connections
/// interleaved, one path, sizes that repeat.
fn busy_block() -> Vec<Traffic> {
    (0..500)
        .map(|i| {
            let client = format!("203.0.113.{}:{}", i % 50, 40_000 + i % 50);
            let mut t = record(1_764_000_000_000_000 + i * 15, &client, "/small.bin", 200);
            t.duration_ms = i % 3 / 2;
            t
        })
        .collect()
}

#[test]
fn packed_blocks_read_back_exactly_and_are_smaller_than_the_older_forms() {
    let mut rows = busy_block();
    // Strings JSON must escape, a record older than the one before, every
    // field changing at once, and times as far apart as they can be.
    rows.push(record(1_763_999_999_999_000, "[::1]:1", "/\"q\"\\ü\n", 404));
    let mut odd = record(i64::MIN, "a", "/", -1);
    (
        odd.method,
        odd.host,
        odd.bytes_in,
        odd.bytes_out,
        odd.duration_ms,
    ) = ("POST".into(), "b".into(), i64::MAX, 0, i64::MIN);
    odd.error = "agent home could not connect db: \"refused\"".into();
    odd.failures = 7;
    rows.push(odd);
    rows.push(record(i64::MAX, "a", "/", 0));
    let refs: Vec<&Traffic> = rows.iter().collect();
    let t0 = 1_764_000_000_000_000;
    let packed = pack(&refs, t0).expect("packs");
    let want: Vec<Entry> = rows.iter().map(entry).collect();
    assert_eq!(unpack(&packed).expect("unpacks"), want);

    // On the busy block alone: under half the nine-integer form, and under
    // a fifth of an array per record.
    let rows = busy_block();
    let refs: Vec<&Traffic> = rows.iter().collect();
    let want: Vec<Entry> = rows.iter().map(entry).collect();
    let packed = pack(&refs, rows[0].at).expect("packs");
    let fixed = fixed_form(&rows, rows[0].at);
    let oldest = oldest_form(&want);
    assert!(
        packed.len() * 2 < fixed.len() && packed.len() * 5 < oldest.len(),
        "packed {} bytes, nine-integer form {}, oldest form {}",
        packed.len(),
        fixed.len(),
        oldest.len()
    );
    // Blocks written in the older forms still read.
    assert_eq!(unpack(&fixed).expect("nine-integer form reads"), want);
    assert_eq!(unpack(&oldest).expect("oldest form reads"), want);
    assert_eq!(unpack("[]").expect("empty"), Vec::<Entry>::new());
    assert_eq!(unpack("[3,7,[],[]]").expect("empty"), Vec::<Entry>::new());
    // The eight-field delta form of 2026-12-02 reads with no error.
    let delta = unpack(r#"[3,7,["c","GET"],[31,5,0,1,0,0,200]]"#).expect("delta form reads");
    assert_eq!(
        delta,
        [Entry {
            at: 12,
            client: "c".into(),
            method: "GET".into(),
            host: "c".into(),
            path: "c".into(),
            status: 200,
            bytes_in: 0,
            bytes_out: 0,
            duration_ms: 0,
            error: String::new(),
            failures: 0,
        }]
    );
}

#[test]
fn a_damaged_packed_block_is_an_error_not_a_panic() {
    for (i, text) in [
        r#"[2,7,["c"],[0,0,0,0,0,200,1,2,3]]"#,  // fine: a control
        r#"[3,7,["c"],[16,5,200,0,255,1,0,0]]"#, // fine: a control
        r#"[2,7,["c"],[0,0,0,0,5,200,1,2,3]]"#,  // a string that is not there
        r#"[2,7,["c"],[0,0,0,0,-1,200,1,2,3]]"#, // a negative place
        r#"[2,7,["c"],[0,0,0,0,0,200,1,2]]"#,    // a record cut short
        r#"[3,7,["c"],[1,5,1]]"#,                // a string that is not there
        r#"[3,7,["c"],[1,5,-1]]"#,               // a negative place
        r#"[3,7,["c"],[16,5]]"#,                 // a record cut short
        r#"[3,7,["c"],[0]]"#,                    // cut before its time
        r#"[3,7,["c"],[256,5]]"#,                // a mask beyond the fields
        r#"[3,7,["c"],[-1,5]]"#,                 // a negative mask
        r#"[4,7,["c"],[16,5,1]]"#,               // an error that is not there
        r#"[4,7,["c"],[1024,5]]"#,               // a mask beyond the fields
        r#"[5,7,["c"],[0,0,0,0,0,200,1,2,3]]"#,  // a form this build does not know
        r#"[3,7,["c"],[16,5,200]"#,              // truncated text
    ]
    .into_iter()
    .enumerate()
    {
        let got = unpack(text);
        assert_eq!(got.is_ok(), i < 2, "{text}: {got:?}");
    }
}

#[test]
fn a_filtered_read_returns_what_the_filter_keeps_in_every_form() {
    let mut rows = busy_block();
    rows[7].host = "other.example.com".into();
    rows[9].status = 502;
    let refs: Vec<&Traffic> = rows.iter().collect();
    let packed = pack(&refs, rows[0].at).expect("packs");
    let fixed = fixed_form(&rows, rows[0].at);
    let oldest = oldest_form(&rows.iter().map(entry).collect::<Vec<_>>());
    for text in [&packed, &fixed, &oldest] {
        let other = unpack_where(text, |_, host, _| host == "other.example.com").expect("reads");
        assert_eq!(other, [entry(&rows[7])]);
        let failed = unpack_where(text, |_, _, status| status == 502).expect("reads");
        assert_eq!(failed, [entry(&rows[9])]);
        let late = unpack_where(text, |at, _, _| at >= rows[498].at).expect("reads");
        assert_eq!(late, [entry(&rows[498]), entry(&rows[499])]);
    }
    // A record the filter drops is still checked.
    let damaged = r#"[3,7,["c"],[1,5,9]]"#;
    assert!(unpack_where(damaged, |_, _, _| false).is_err());
}
