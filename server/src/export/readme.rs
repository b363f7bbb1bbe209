//! The package's README.txt: how to verify it, in Chinese and English, with
//! the fingerprints to compare. Plain language for a court clerk or a
//! defence expert; the exact rules are in `docs/FORMAT.md` §10.

/// The README of the export `id` of `case`; `fp` are the CA, receipt and
/// log key fingerprints, `vkey` the log's verifier key.
pub fn text(case: &str, id: &str, fp: &[String; 3], vkey: &str) -> String {
    let [ca, receipt, log] = fp;
    format!(
        "\
fieldseal 证据包 / evidence package
案件 / case: {case}
导出编号 / export id: {id}

==================== 中文 ====================

本文件是一个标准 tar 归档，可用任何 tar 工具打开（tar -xf 文件名）。其中包含：
执法记录仪录制的原始视频分段（devices/*/media/*.ts，可直接播放）、设备对每一段
和每一个事件的签名链（chain.log）、服务器对每一条记录的签名回执（receipts.log）、
设备证书（由服务器的证书颁发机构签发）、透明日志的签名检查点及包含证明
（log/）、本案的保管记录、合规报告（compliance.json），以及由服务器签名的清单
（manifest.json、manifest.sig），清单列出每个文件的 SHA-256。

如何核验（无需联网，无需 fieldseal 服务器）：
1. 构建核验程序：cargo build --release -p fieldseal-proto --bin fieldseal-verify
   （它只依赖 fieldseal-proto 和 Rust 标准库）。
2. 运行：fieldseal-verify 本文件.tar
   退出码 0 表示全部通过；1 表示发现问题（报告逐条列出）；2 表示文件无法读取。
3. 将程序打印的三个指纹与执法机关公布的指纹逐字比对。只有指纹一致，
   核验结果才证明材料来自该机关的服务器：
   证书颁发机构（CA）密钥指纹: {ca}
   回执密钥指纹:               {receipt}
   日志密钥指纹:               {log}
   日志验证密钥:               {vkey}

核验内容：每个文件与签名清单一致（增删改任何文件都会被发现）；设备证书由 CA
签发且证明的正是该设备密钥；签名链的每个签名、前后链接、时间连续性以及每段视频
的哈希；每条记录都有服务器回执；每条记录和每条保管记录都包含在签名检查点中；
本次导出本身也记录在日志中。

==================== English ====================

This file is a standard tar archive; any tar tool opens it (tar -xf FILE). It
holds the original video segments recorded by the body cameras
(devices/*/media/*.ts, playable as they are), each device's signed chain of
every segment and event (chain.log), the server's signed receipt for every
entry (receipts.log), the device certificates issued by the server's
certificate authority, a signed checkpoint of the transparency log with
inclusion proofs (log/), the custody record of the case, the compliance report
(compliance.json), and a manifest signed by the server (manifest.json,
manifest.sig) listing the SHA-256 of every file.

How to verify (no network, no fieldseal server needed):
1. Build the verifier: cargo build --release -p fieldseal-proto --bin fieldseal-verify
   (it depends on fieldseal-proto and the Rust standard library alone).
2. Run: fieldseal-verify THIS-FILE.tar
   Exit status 0: everything verifies; 1: problems found (each one is listed);
   2: the file cannot be read.
3. Compare the three fingerprints it prints, character by character, with the
   ones the enforcement body publishes. Only when they match does the result
   prove that the material comes from that body's server:
   CA key fingerprint:      {ca}
   receipt key fingerprint: {receipt}
   log key fingerprint:     {log}
   log verifier key:        {vkey}

What is checked: every file matches the signed manifest (adding, removing or
changing any file is detected); each device certificate was issued by the CA
and certifies exactly that device's key; every signature and link of the
chains, their time continuity and every segment's hash; a server receipt for
every entry; every entry and every custody record is included in the signed
checkpoint; and this export itself is recorded in the log.
"
    )
}
