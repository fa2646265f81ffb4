//! Negotiate (Kerberos, or NTLM when Kerberos is unavailable) as the signed-in Windows user, through
//! SSPI: `AcquireCredentialsHandleW` + `InitializeSecurityContextW` for the `Negotiate` package with
//! the proxy's SPN `HTTP/<proxy host>`.
//!
//! Contract: one [`SspiContext`] per handshake; each [`SspiContext::step`] turns the proxy's token
//! (none at first) into ours. Handles are freed on drop. Tokens are returned, never logged.

// SSPI is a C API: calling it needs `unsafe`. It is confined to this Windows-only module, every call
// gets buffers it owns for the duration of the call, and the handles live in this struct.
#![allow(unsafe_code)]

use windows_sys::Win32::Foundation::{SEC_E_OK, SEC_I_CONTINUE_NEEDED};
use windows_sys::Win32::Security::Authentication::Identity::{
    AcquireCredentialsHandleW, DeleteSecurityContext, FreeContextBuffer, FreeCredentialsHandle,
    ISC_REQ_ALLOCATE_MEMORY, ISC_REQ_CONNECTION, InitializeSecurityContextW, SECBUFFER_TOKEN,
    SECBUFFER_VERSION, SECPKG_CRED_OUTBOUND, SECURITY_NATIVE_DREP, SecBuffer, SecBufferDesc,
};
use windows_sys::Win32::Security::Credentials::SecHandle;
use zeroize::Zeroizing;

/// An SSPI client context for one proxy handshake.
pub(crate) struct SspiContext {
    credentials: SecHandle,
    context: Option<SecHandle>,
    /// `HTTP/<proxy host>`, NUL-terminated UTF-16.
    spn: Vec<u16>,
}

impl std::fmt::Debug for SspiContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SspiContext([redacted])")
    }
}

// === impl SspiContext ===

impl SspiContext {
    /// Acquires the current user's outbound credentials for the `Negotiate` package.
    pub(crate) fn new(spn: &str) -> Result<SspiContext, String> {
        let package = wide("Negotiate");
        let mut credentials = SecHandle::default();
        let mut expiry = 0i64;
        // SAFETY: `package` is a live NUL-terminated string; null principal/logon id/auth data mean
        // "the calling user"; `credentials` and `expiry` are valid out-pointers.
        let status = unsafe {
            AcquireCredentialsHandleW(
                std::ptr::null(),
                package.as_ptr(),
                SECPKG_CRED_OUTBOUND,
                std::ptr::null(),
                std::ptr::null(),
                None,
                std::ptr::null(),
                &mut credentials,
                &mut expiry,
            )
        };
        if status != SEC_E_OK {
            return Err(format!("SSPI has no Negotiate credentials ({status:#x})"));
        }
        Ok(SspiContext {
            credentials,
            context: None,
            spn: wide(spn),
        })
    }

    /// One leg: the proxy's token in (none for the first leg), ours out.
    pub(crate) fn step(&mut self, input: Option<&[u8]>) -> Result<Zeroizing<Vec<u8>>, String> {
        let mut input_copy = input.map(<[u8]>::to_vec).unwrap_or_default();
        let mut in_buffer = SecBuffer {
            cbBuffer: u32::try_from(input_copy.len()).map_err(|_| "token too large")?,
            BufferType: SECBUFFER_TOKEN,
            pvBuffer: input_copy.as_mut_ptr().cast(),
        };
        let in_desc = SecBufferDesc {
            ulVersion: SECBUFFER_VERSION,
            cBuffers: 1,
            pBuffers: &mut in_buffer,
        };
        let mut out_buffer = SecBuffer {
            cbBuffer: 0,
            BufferType: SECBUFFER_TOKEN,
            pvBuffer: std::ptr::null_mut(),
        };
        let mut out_desc = SecBufferDesc {
            ulVersion: SECBUFFER_VERSION,
            cBuffers: 1,
            pBuffers: &mut out_buffer,
        };
        let mut new_context = self.context.unwrap_or_default();
        let (mut attributes, mut expiry) = (0u32, 0i64);
        let old_context = self
            .context
            .as_ref()
            .map_or(std::ptr::null(), |c| c as *const _);
        let input_desc = match input {
            Some(_) => &in_desc as *const SecBufferDesc,
            None => std::ptr::null(),
        };
        // SAFETY: every pointer refers to a local that outlives the call; SSPI allocates the output
        // token (ISC_REQ_ALLOCATE_MEMORY), which is copied and freed below.
        let status = unsafe {
            InitializeSecurityContextW(
                &self.credentials,
                old_context,
                self.spn.as_ptr(),
                ISC_REQ_CONNECTION | ISC_REQ_ALLOCATE_MEMORY,
                0,
                SECURITY_NATIVE_DREP,
                input_desc,
                0,
                &mut new_context,
                &mut out_desc,
                &mut attributes,
                &mut expiry,
            )
        };
        if status == SEC_E_OK || status == SEC_I_CONTINUE_NEEDED {
            self.context = Some(new_context);
        }
        let token = take_output(&out_buffer);
        match status {
            SEC_E_OK | SEC_I_CONTINUE_NEEDED => Ok(token),
            other => Err(format!("SSPI refused the Negotiate step ({other:#x})")),
        }
    }
}

impl Drop for SspiContext {
    fn drop(&mut self) {
        // SAFETY: the handles were filled in by SSPI and are released exactly once, here.
        unsafe {
            if let Some(context) = &self.context {
                DeleteSecurityContext(context);
            }
            FreeCredentialsHandle(&self.credentials);
        }
    }
}

/// Copies and frees the token SSPI allocated.
fn take_output(buffer: &SecBuffer) -> Zeroizing<Vec<u8>> {
    if buffer.pvBuffer.is_null() {
        return Zeroizing::new(Vec::new());
    }
    // SAFETY: SSPI returned `cbBuffer` bytes at `pvBuffer`, allocated for us; we copy them out and
    // hand the allocation back with FreeContextBuffer.
    unsafe {
        let bytes =
            std::slice::from_raw_parts(buffer.pvBuffer.cast::<u8>(), buffer.cbBuffer as usize)
                .to_vec();
        FreeContextBuffer(buffer.pvBuffer);
        Zeroizing::new(bytes)
    }
}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}
