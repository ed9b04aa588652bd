//! The binary's kernel interfaces, one small module each. This is the only place with
//! `unsafe` code in the project; every `unsafe` block carries a `// SAFETY:` comment.

pub mod tty;
