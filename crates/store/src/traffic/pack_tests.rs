use super::{Entry, Traffic, pack, unpack};

fn record(at: i64, client: &str, path: &str, status: i64) -> Traffic {
    Traffic {
        at,
        kind: "http".into(),
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
    (
        t.at,
        t.client.clone(),
        t.method.clone(),
        t.host.clone(),
        t.path.clone(),
        t.status,
        t.bytes_in,
        t.bytes_out,
        t.duration_ms,
    )
}

#[test]
fn packed_blocks_read_back_exactly_and_are_under_half_the_older_form() {
    let mut rows: Vec<Traffic> = (0..100)
        .map(|i| {
            let client = format!("203.0.113.{}:{}", i % 4, 40_000 + i % 4);
            record(1_764_000_000_000_000 + i * 37, &client, "/small.bin", 200)
        })
        .collect();
    // Strings JSON must escape, and a record older than the first.
    rows.push(record(1_763_999_999_999_000, "[::1]:1", "/\"q\"\\ü\n", 404));
    let refs: Vec<&Traffic> = rows.iter().collect();
    let t0 = rows.iter().map(|t| t.at).min().unwrap_or_default();
    let packed = pack(&refs, t0).expect("packs");
    let want: Vec<Entry> = rows.iter().map(entry).collect();
    assert_eq!(unpack(&packed).expect("unpacks"), want);
    let older = serde_json::to_string(&want).expect("older form");
    assert!(
        packed.len() * 2 < older.len(),
        "packed {} bytes, older form {}",
        packed.len(),
        older.len()
    );
    // Blocks written in the older form still read.
    assert_eq!(unpack(&older).expect("older form reads"), want);
    assert_eq!(unpack("[]").expect("empty"), Vec::<Entry>::new());
}

#[test]
fn a_damaged_packed_block_is_an_error_not_a_panic() {
    for (i, text) in [
        r#"[2,7,["c"],[0,0,0,0,0,200,1,2,3]]"#,  // fine: the control
        r#"[2,7,["c"],[0,0,0,0,5,200,1,2,3]]"#,  // a string that is not there
        r#"[2,7,["c"],[0,0,0,0,-1,200,1,2,3]]"#, // a negative place
        r#"[2,7,["c"],[0,0,0,0,0,200,1,2]]"#,    // a record cut short
        r#"[3,7,["c"],[0,0,0,0,0,200,1,2,3]]"#,  // a form this build does not know
        r#"[2,7,["c"],[0,0,0,0,0,200,1,2,3]"#,   // truncated text
    ]
    .into_iter()
    .enumerate()
    {
        let got = unpack(text);
        assert_eq!(got.is_ok(), i == 0, "{text}: {got:?}");
    }
}
