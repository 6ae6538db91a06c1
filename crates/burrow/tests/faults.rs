//! Faults that must not lose data: a full disk under the gateway's
//! database, and streams cut at shutdown. Each case is bounded in time and
//! drives the real binary as users run it.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burrow_e2e::disk::SmallDisk;
use burrow_e2e::registered::{run, setup};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_burrow"))
}

/// The FQDNs `list-fqdn --json` shows.
async fn listed(st: &burrow_e2e::registered::Setup) -> Result<Vec<String>> {
    let v = st.api_get("/fqdn-rules").await?;
    Ok(v.as_array()
        .context("a list")?
        .iter()
        .filter_map(|r| r["fqdn"].as_str().map(str::to_owned))
        .collect())
}

#[tokio::test]
async fn a_full_disk_refuses_changes_and_loses_none_it_acknowledged() -> Result<()> {
    let disk = SmallDisk::new("8m")?;
    let data = disk.path().join("gw");
    let data_arg = data.display().to_string();
    let root = tempfile::tempdir()?;
    std::fs::write(root.path().join("index.html"), "served\n")?;
    let (_svc, port) = burrow_e2e::registered::static_server(root.path(), None).await?;
    let mut st = setup(
        &bin(),
        &["--data-dir", &data_arg],
        &["--map-host", "svc.test=127.0.0.1"],
        true,
    )
    .await?;
    st.add_fqdn("svc.test", &[]).await?;
    let mut acked = vec!["svc.test".to_owned()];
    let proxy = st.proxy_url();
    let url = format!("http://svc.test:{port}/");
    let fetch = || async {
        let (_, out, _) = run(
            "curl",
            &["-s", "--max-time", "20", "-x", &proxy, &url],
            Path::new("/"),
            &[],
        )
        .await?;
        anyhow::Ok(out)
    };
    assert_eq!(fetch().await?.trim(), "served");

    disk.fill()?;
    let mark = st.gateway.mark();
    let mut refused = Vec::new();
    for i in 0..12 {
        let fqdn = format!("full{i}.test");
        let (code, out, err) = st
            .cli(&["add-fqdn", "--agent-name", "edge", "--fqdn", &fqdn])
            .await?;
        if code == 0 {
            acked.push(fqdn);
        } else {
            assert!(err.contains("disk is full"), "{fqdn}: {out} {err}");
            refused.push(fqdn);
        }
        // Traffic goes on while the audit trail cannot be written.
        assert_eq!(
            fetch().await?.trim(),
            "served",
            "traffic through a full disk"
        );
    }
    assert!(!refused.is_empty(), "the disk never filled: {acked:?}");
    let now = listed(&st).await?;
    for f in &refused {
        assert!(!now.contains(f), "{f} was refused and is listed: {now:?}");
    }
    // The audit writer says its writes fail, not that its queue is full.
    st.gateway
        .wait_log_after(mark, "traffic audit records not written", |_| true)
        .await?;
    assert_eq!(st.gateway.count_logs("traffic audit queue full"), 0);

    // Space is back: changes work again without a restart, and the kept
    // audit records are written.
    let mark = st.gateway.mark();
    disk.free()?;
    for i in 0..3 {
        let fqdn = format!("after{i}.test");
        st.add_fqdn(&fqdn, &[]).await?;
        acked.push(fqdn);
    }
    st.gateway
        .wait_log_after(mark, "traffic audit writes resumed", |_| true)
        .await?;

    // After a restart: everything acknowledged, nothing refused.
    st.restart_gateway_with(&[]).await?;
    let after = listed(&st).await?;
    for f in &acked {
        assert!(
            after.contains(f),
            "{f} was acknowledged and is gone: {after:?}"
        );
    }
    for f in &refused {
        assert!(
            !after.contains(f),
            "{f} was refused and is stored: {after:?}"
        );
    }
    Ok(())
}
