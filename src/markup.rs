//! Escaping text for XML and HTML (the admin status page, POST Object's answers): the five
//! characters that are markup, as entities both languages read.

/// `s` with `&`, `<`, `>`, `"` and `'` as entities.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_markup_character_is_an_entity() {
        assert_eq!(super::escape("<a&\"b\">'x'"), "&lt;a&amp;&quot;b&quot;&gt;&#39;x&#39;");
        assert_eq!(super::escape("plain é"), "plain é");
    }
}
