//! `burrow keygen`: an agent key pair, named and written as Octopus Connection
//! Agent's openssl commands write it.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burrow_auth::keygen::{KeyKind, generate};
use burrow_wire::valid_name;
use clap::Args;

/// `burrow keygen` flags.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// The agent the key is for: names the files
    /// ConnectionAgent-NAME.pem (private) and ConnectionAgent-NAME.pem.pub.
    #[arg(long, env = "BURROW_AGENT_NAME")]
    pub agent_name: String,
    /// Key type: rsa2048 (default, as `openssl genrsa 2048`), rsa3072,
    /// rsa4096, p256 or ed25519.
    #[arg(long, default_value = "rsa2048")]
    pub key_type: KeyKind,
    /// Directory to write the two files to; created (readable by you only)
    /// if missing.
    #[arg(long, default_value = ".")]
    pub out_dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

fn write_new(path: &Path, data: &str, mode: u32) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(data.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Makes and writes the pair; refuses to overwrite anything.
pub fn run(args: KeygenArgs) -> Result<()> {
    if !valid_name(&args.agent_name) {
        bail!(
            "invalid agent name {:?}: use 1-200 letters, digits, '-' and '.', not only dots",
            args.agent_name
        );
    }
    let private = args
        .out_dir
        .join(format!("ConnectionAgent-{}.pem", args.agent_name));
    let public = args
        .out_dir
        .join(format!("ConnectionAgent-{}.pem.pub", args.agent_name));
    for p in [&private, &public] {
        if p.exists() {
            bail!(
                "{} already exists: move it away or choose another --out-dir (nothing was written)",
                p.display()
            );
        }
    }
    if !args.out_dir.exists() {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(&args.out_dir)
            .with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    }
    let pair = generate(args.key_type)?;
    write_new(&private, &pair.private_pem, 0o600)?;
    if let Err(e) = write_new(&public, &pair.public.pem, 0o644) {
        // Leave no half pair behind.
        let _ = std::fs::remove_file(&private);
        return Err(e);
    }
    let alg = format!(
        "{} {}",
        pair.public.algorithm.name(),
        pair.public.algorithm.bits()
    );
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "private_key": private.display().to_string(),
                "public_key": public.display().to_string(),
                "algorithm": alg,
                "fingerprint": pair.public.fingerprint,
            })
        );
    } else {
        println!(
            "private key: {}  (keep it secret; mode 0600)",
            private.display()
        );
        println!("public key:  {}", public.display());
        println!("algorithm:   {alg}");
        println!("fingerprint: {}", pair.public.fingerprint);
    }
    Ok(())
}
