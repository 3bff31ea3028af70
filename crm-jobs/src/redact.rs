//! Customer data kept out of what is shown: e-mail addresses in run messages.

/// `text` with every e-mail address (`local@domain.tld`) replaced by `[e-mail]`, so that run
/// messages can be shown where customer data must not be.
pub fn redact_emails(text: &str) -> String {
    // Every character a customer's address may hold in its local part (crm-core accepts
    // RFC 5322's atext), so that no part of the address is left showing.
    let is_local = |c: char| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c);
    let is_domain = |c: char| c.is_alphanumeric() || ".-".contains(c);
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '@' {
            let mut start = i;
            while start > 0 && is_local(chars[start - 1]) {
                start -= 1;
            }
            let mut end = i + 1;
            while end < chars.len() && is_domain(chars[end]) {
                end += 1;
            }
            let domain: String = chars[i + 1..end].iter().collect();
            let domain = domain.trim_end_matches('.');
            // The local part's characters were already copied: take them back.
            let local_len = i - start;
            if local_len > 0 && domain.contains('.') {
                for _ in 0..local_len {
                    out.pop();
                }
                out.push_str("[e-mail]");
                // Keep a sentence's final period.
                i += 1 + domain.chars().count();
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}
