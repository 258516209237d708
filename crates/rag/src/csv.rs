//! RFC 4180 records: quoted fields may hold commas, doubled quotes and newlines; CRLF or LF.

/// Every record of a CSV text, the header included.
pub fn records(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        any = true;
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            '"' if quoted => quoted = false,
            '"' if field.is_empty() => quoted = true,
            ',' if !quoted => record.push(std::mem::take(&mut field)),
            '\r' if !quoted && chars.peek() == Some(&'\n') => {}
            '\n' if !quoted => {
                record.push(std::mem::take(&mut field));
                out.push(std::mem::take(&mut record));
                any = false;
            }
            c => field.push(c),
        }
    }
    if any {
        record.push(field);
        out.push(record);
    }
    out
}

/// Records as maps from header name to value (rows with the wrong width are skipped).
pub fn rows(text: &str) -> Vec<std::collections::HashMap<String, String>> {
    let mut all = records(text).into_iter();
    let Some(header) = all.next() else {
        return Vec::new();
    };
    all.filter(|r| r.len() == header.len())
        .map(|r| header.iter().cloned().zip(r).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoted_fields_keep_commas_quotes_and_newlines() {
        let t = "id,text\r\n1,\"a, \"\"b\"\"\nc\"\r\n2,plain\n";
        assert_eq!(
            super::records(t),
            vec![
                vec!["id".to_owned(), "text".into()],
                vec!["1".into(), "a, \"b\"\nc".into()],
                vec!["2".into(), "plain".into()],
            ]
        );
        assert_eq!(super::rows(t)[0]["text"], "a, \"b\"\nc");
    }
}
