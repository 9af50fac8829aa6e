//! Accounts for boxes that log in as another user (see [`super::BoxBuilder::login_user`]):
//! a build account with a plain `/bin/sh`, or a second developer sharing a box. Needs
//! root.

use std::process::{Command, Stdio};

use anyhow::{Context, Result, ensure};

/// Creates the system account `name` (home directory, shell `/bin/sh`) if it does not
/// exist, and makes sure sshd lets it log in with a key.
pub fn ensure_account(name: &str) -> Result<()> {
    let exists = Command::new("getent")
        .args(["passwd", name])
        .stdout(Stdio::null())
        .status()
        .context("running getent")?
        .success();
    if !exists {
        tracing::info!("creating system user {name}");
        run(
            "useradd",
            &["--system", "--create-home", "--shell", "/bin/sh", name],
        )?;
    }
    // useradd leaves the password field at "!", which sshd (without PAM) treats as a
    // locked account and refuses even for key logins. "*" allows no password either,
    // but is not "locked".
    let shadow = run("getent", &["shadow", name])?;
    if shadow
        .split(':')
        .nth(1)
        .is_some_and(|password| password.starts_with('!'))
    {
        tracing::info!("unlocking {name} for key logins (password field \"*\")");
        run("usermod", &["-p", "*", name])?;
    }
    Ok(())
}

/// Runs `program`, returning its stdout, failing with its stderr unless it succeeds.
fn run(program: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {program}"))?;
    ensure!(
        output.status.success(),
        "{program} {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
