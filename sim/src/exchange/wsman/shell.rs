//! The WinRS shell model behind the WS-Man endpoint: shells owned by users, commands with buffered
//! output, and the per-user shell quota. Commands are emulated, never executed:
//! - `whoami` prints the caller's UPN; `echo ...` prints its arguments;
//! - `more` echoes stdin (Send) to stdout until the stream ends (so Receive can long-poll on it);
//! - anything else fails like cmd.exe does for an unknown command.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Notify;

use super::soap::Fault;
use crate::exchange::ids;

/// All shells and affinity cookies of the emulator.
#[derive(Debug, Default)]
pub(crate) struct State {
    shells: HashMap<String, Shell>,
    /// MS-WSMAN cookie value → user key, so a cookie only works for the user it was issued to.
    cookies: HashMap<String, String>,
}

#[derive(Debug)]
struct Shell {
    /// Lower-cased user name of the creator: only they can use the shell.
    owner: String,
    /// What `whoami` prints for this shell.
    display: String,
    commands: Vec<Command>,
    /// Wakes Receive long-polls when output arrives, a command ends or the shell goes away.
    notify: Arc<Notify>,
}

#[derive(Debug)]
struct Command {
    id: String,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    exit_code: Option<i32>,
    /// `more`: stdin is copied to stdout.
    echo_stdin: bool,
}

/// What one Receive hands back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Output {
    pub(crate) command_id: String,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
    /// `Some` once the command is done (state Done with this exit code).
    pub(crate) exit_code: Option<i32>,
}

// === impl State ===

impl State {
    pub(crate) fn shell_count(&self) -> usize {
        self.shells.len()
    }

    /// Drop all shells and cookies, waking every waiting Receive.
    pub(crate) fn clear(&mut self) {
        for shell in self.shells.values() {
            shell.notify.notify_waiters();
        }
        self.shells.clear();
        self.cookies.clear();
    }

    /// Issue a new affinity cookie value for `user`.
    pub(crate) fn issue_cookie(&mut self, user: &str) -> String {
        let value = ids::opaque();
        self.cookies.insert(value.clone(), user.to_owned());
        value
    }

    /// The cookie was issued here, to this user.
    pub(crate) fn cookie_valid(&self, value: &str, user: &str) -> bool {
        self.cookies.get(value).is_some_and(|owner| owner == user)
    }

    /// Create a shell for `owner`, honouring a client-chosen id; refuses beyond `max` shells per user.
    pub(crate) fn create(
        &mut self,
        owner: &str,
        display: &str,
        requested_id: Option<String>,
        max: usize,
    ) -> Result<String, Fault> {
        let open = self.shells.values().filter(|s| s.owner == owner).count();
        if open >= max {
            return Err(Fault::shell_quota(max));
        }
        let id = requested_id.unwrap_or_else(ids::uuid);
        let shell = Shell {
            owner: owner.to_owned(),
            display: display.to_owned(),
            commands: Vec::new(),
            notify: Arc::new(Notify::new()),
        };
        self.shells.insert(id.clone(), shell);
        Ok(id)
    }

    /// Start a command; returns its id.
    pub(crate) fn command(
        &mut self,
        owner: &str,
        shell_id: &str,
        words: &[String],
    ) -> Result<String, Fault> {
        let shell = self.shell_mut(owner, shell_id)?;
        let command = Command::run(words, &shell.display);
        let id = command.id.clone();
        shell.commands.push(command);
        shell.notify.notify_waiters();
        Ok(id)
    }

    /// The notifier a Receive waits on.
    pub(crate) fn notifier(&self, owner: &str, shell_id: &str) -> Result<Arc<Notify>, Fault> {
        self.shell(owner, shell_id).map(|s| s.notify.clone())
    }

    /// Take pending output of a command (or the latest command when `command_id` is `None`);
    /// `Ok(None)` when there is nothing to report yet.
    pub(crate) fn take_output(
        &mut self,
        owner: &str,
        shell_id: &str,
        command_id: Option<&str>,
    ) -> Result<Option<Output>, Fault> {
        let shell = self.shell_mut(owner, shell_id)?;
        let command = match command_id {
            Some(id) => shell.commands.iter_mut().find(|c| c.id == id),
            None => shell.commands.last_mut(),
        };
        let Some(command) = command else {
            return match command_id {
                Some(_) => Err(Fault::unsupported("unknown CommandId")),
                None => Ok(None),
            };
        };
        if command.stdout.is_empty() && command.stderr.is_empty() && command.exit_code.is_none() {
            return Ok(None);
        }
        Ok(Some(Output {
            command_id: command.id.clone(),
            stdout: std::mem::take(&mut command.stdout),
            stderr: std::mem::take(&mut command.stderr),
            exit_code: command.exit_code,
        }))
    }

    /// Feed stdin to a command; `end` closes its input.
    pub(crate) fn send(
        &mut self,
        owner: &str,
        shell_id: &str,
        command_id: Option<&str>,
        data: &[u8],
        end: bool,
    ) -> Result<(), Fault> {
        let shell = self.shell_mut(owner, shell_id)?;
        let command = match command_id {
            Some(id) => shell.commands.iter_mut().find(|c| c.id == id),
            None => shell.commands.last_mut(),
        }
        .ok_or_else(|| Fault::unsupported("Send without a running command"))?;
        if command.echo_stdin && command.exit_code.is_none() {
            command.stdout.extend_from_slice(data);
        }
        if end && command.exit_code.is_none() {
            command.exit_code = Some(0);
        }
        shell.notify.notify_waiters();
        Ok(())
    }

    /// Deliver a signal: terminate and ctrl_c end the command.
    pub(crate) fn signal(
        &mut self,
        owner: &str,
        shell_id: &str,
        command_id: &str,
        code: &str,
    ) -> Result<(), Fault> {
        let shell = self.shell_mut(owner, shell_id)?;
        let ends =
            code.ends_with("Terminate") || code.ends_with("ctrl_c") || code.ends_with("ctrl_break");
        let running = shell
            .commands
            .iter_mut()
            .find(|c| c.id == command_id && c.exit_code.is_none());
        if let (true, Some(command)) = (ends, running) {
            // STATUS_CONTROL_C_EXIT, as cmd.exe reports an interrupted command.
            command.exit_code = Some(-1073741510);
        }
        shell.notify.notify_waiters();
        Ok(())
    }

    /// Delete a shell; pending Receives wake up and find it gone.
    pub(crate) fn delete(&mut self, owner: &str, shell_id: &str) -> Result<(), Fault> {
        self.shell(owner, shell_id)?;
        if let Some(shell) = self.shells.remove(shell_id) {
            shell.notify.notify_waiters();
        }
        Ok(())
    }

    fn shell(&self, owner: &str, shell_id: &str) -> Result<&Shell, Fault> {
        self.shells
            .get(shell_id)
            .filter(|s| s.owner == owner)
            .ok_or_else(|| Fault::shell_not_found(shell_id))
    }

    fn shell_mut(&mut self, owner: &str, shell_id: &str) -> Result<&mut Shell, Fault> {
        self.shells
            .get_mut(shell_id)
            .filter(|s| s.owner == owner)
            .ok_or_else(|| Fault::shell_not_found(shell_id))
    }
}

// === impl Command ===

impl Command {
    /// Emulate `words` (command name first) for a shell whose user prints as `display`.
    fn run(words: &[String], display: &str) -> Command {
        let mut command = Command {
            id: ids::uuid(),
            stdout: Vec::new(),
            stderr: Vec::new(),
            exit_code: Some(0),
            echo_stdin: false,
        };
        let name = words
            .first()
            .map(|w| w.to_ascii_lowercase())
            .unwrap_or_default();
        match name.as_str() {
            "whoami" => command.stdout = format!("{display}\r\n").into_bytes(),
            "echo" => command.stdout = format!("{}\r\n", words[1..].join(" ")).into_bytes(),
            "more" => {
                command.echo_stdin = true;
                command.exit_code = None;
            }
            _ => {
                command.stderr = format!(
                    "'{}' is not recognized as an internal or external command,\r\noperable program or batch file.\r\n",
                    words.first().map(String::as_str).unwrap_or("")
                )
                .into_bytes();
                command.exit_code = Some(1);
            }
        }
        command
    }
}
