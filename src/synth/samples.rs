//! The reviewed sample set under `samples/`: one night's inbox of 東京都新宿区's 国保 and of the
//! Tokyo union (東京都後期高齢者医療広域連合), as of 2026-12-01, and the same files in every
//! format × encoding under `samples/formats/`. `tests/samples.rs` checks the files on disk equal
//! what this module renders, byte for byte (`NHI_BLESS=1` rewrites them); `samples/README.md`
//! describes the cast.
//!
//! Everything is written with [`RecordWriter`] and the replace policy: the only character
//! outside CP932 is the 𠮷 of 𠮷田　花子, which Shift_JIS files carry as `●` (文字同定).

use super::{Row, kokuho_insurer_number, kouki_insurer_number, mix64, municipality_code, my_number};
use crate::domain::{FileKind, InsurerNumber, Timestamp};
use crate::formats::writer::{RecordWriter, UnmappableChar, UnmappablePolicy, WriteError};
use crate::formats::{FileHeader, Format, TextEncoding};

/// The date the sample night is run for.
pub const AS_OF: &str = "20261201";

/// 東京都新宿区 (地方公共団体コード body).
const SHINJUKU: &str = "13104";

/// 新宿区 国保 (00131045).
pub fn kokuho() -> String {
    kokuho_insurer_number(SHINJUKU)
}

/// 東京都後期高齢者医療広域連合, number for 新宿区 (39131040).
pub fn kouki() -> String {
    kouki_insurer_number(SHINJUKU)
}

/// One file of the set, in its inbox format and encoding.
pub struct SampleFile {
    /// File name without extension; begins with the kind.
    pub stem: String,
    pub header: FileHeader,
    pub rows: Vec<Row>,
}

/// A member of the cast. Keys, resident codes, card numbers and My Numbers are derived from `n`
/// so that they are valid, distinct and stable.
#[derive(Clone, Copy)]
struct Person {
    n: u64,
    name: &'static str,
    /// As delivered: half-width, or full-width for the readers to convert.
    kana: &'static str,
    sex: &'static str,
    birth: &'static str,
    has_my_number: bool,
    /// 国保 card number is per household (世帯); the branch number tells its members apart.
    household: u64,
    branch: &'static str,
    family: &'static str,
    post: &'static str,
    address: &'static str,
}

impl Person {
    fn kokuho_key(&self) -> String {
        format!("131045{:010}", 4_700_000 + self.n * 37)
    }
    fn kouki_key(&self) -> String {
        format!("{}{:08}", kouki(), 52_000_000 + self.n * 53)
    }
    fn resident(&self) -> String {
        format!("{:010}", 1_040_000_000 + (mix64(self.n) % 900_000))
    }
    fn my_number(&self) -> String {
        if self.has_my_number {
            my_number(mix64(self.n ^ 0x4D59) % 100_000_000_000)
        } else {
            String::new()
        }
    }
    fn card(&self) -> String {
        format!("{:07}", 1_040_000 + self.household)
    }
}

fn base_change(change_type: &str, effective: &str, insurer: &str, key: &str) -> Row {
    let mut r = Row::new(FileKind::SubscriberChange);
    r.set("ChangeType", change_type)
        .set("EffectiveDate", effective)
        .set("InsurerNumber", insurer)
        .set("SubscriberKey", key);
    r
}

/// 国保 資格取得 with the full record.
fn kokuho_acquisition(p: &Person, since: &str, reason: &str) -> Row {
    let mut r = base_change("1", since, &kokuho(), &p.kokuho_key());
    r.set("InsuredCardSymbol", "新宿")
        .set("InsuredIdentificationNumber", p.card())
        .set("InsuredBranchNumber", p.branch)
        .set("IndividualNumber", p.my_number())
        .set("MunicipalityCode", municipality_code(SHINJUKU))
        .set("ResidentCode", p.resident())
        .set("Name", p.name)
        .set("NameKana", p.kana)
        .set("Sex1", p.sex)
        .set("Birthdate", p.birth)
        .set("QualificationDate", since)
        .set("ReasonOfQualification", reason)
        .set("PersonalFamilyClassification", p.family)
        .set("PostNumber", p.post)
        .set("Address", p.address);
    r
}

/// The union's 資格取得: no card symbol, an 8-digit 被保険者番号, always 本人.
fn kouki_acquisition(p: &Person, qualification: &str, reason: &str) -> Row {
    let mut r = base_change("1", qualification, &kouki(), &p.kouki_key());
    r.set("InsuredIdentificationNumber", format!("{:08}", 10_400_000 + p.n * 7))
        .set("InsuredBranchNumber", "00")
        .set("IndividualNumber", p.my_number())
        .set("MunicipalityCode", municipality_code(SHINJUKU))
        .set("ResidentCode", p.resident())
        .set("Name", p.name)
        .set("NameKana", p.kana)
        .set("Sex1", p.sex)
        .set("Birthdate", p.birth)
        .set("QualificationDate", qualification)
        .set("ReasonOfQualification", reason)
        .set("PersonalFamilyClassification", "1")
        .set("PostNumber", p.post)
        .set("Address", p.address);
    r
}

/// A Scope-1 flag setting (or release) at 新宿区 国保.
fn flag(p: &Person, time: &str, flag_type: &str, op: &str, reason: &str, source: &str, end: &str) -> Row {
    let mut r = Row::new(FileKind::FlagChange);
    r.set("EffectiveTime", time)
        .set("FlagType", flag_type)
        .set("Operation", op)
        .set("Scope", "1")
        .set("InsurerNumber", kokuho())
        .set("SubscriberKey", p.kokuho_key())
        .set("ReasonCode", reason)
        .set("Source", source)
        .set("SupportMeasureEndDate", end);
    r
}

fn fukuhon(p: &Person, op: &str, effective: &str, info: &str, disclosure: &str, items: &[(&str, &str)]) -> Row {
    let mut r = Row::new(FileKind::Fukuhon);
    r.set("Operation", op)
        .set("EffectiveDate", effective)
        .set("InsurerNumber", kokuho())
        .set("SubscriberKey", p.kokuho_key())
        .set("InfoCode", info)
        .set("DisclosureClassification", disclosure);
    for (c, v) in items {
        r.item(c, *v);
    }
    r
}

fn handoff(p: &Person, transition: &str, self_info: &str, non_disclosure: &str, auto: &str, set_time: &str) -> Row {
    let mut r = Row::new(FileKind::AgeTransitionHandoff);
    r.set("SourceInsurerNumber", kokuho())
        .set("SourceSubscriberKey", p.kokuho_key())
        .set("IndividualNumber", p.my_number())
        .set("MunicipalityCode", municipality_code(SHINJUKU))
        .set("ResidentCode", p.resident())
        .set("Name", p.name)
        .set("NameKana", p.kana)
        .set("Sex1", p.sex)
        .set("Birthdate", p.birth)
        .set("AgeTransitionDate", transition)
        .set("SelfInfoProvisionProhibitedFlg", self_info)
        .set("NonDisclosureFlg", non_disclosure)
        .set("AutoResponseProhibitedFlg", auto)
        .set("FlagSetTime", set_time);
    r
}

#[allow(clippy::too_many_arguments)]
const fn person(
    n: u64,
    name: &'static str,
    kana: &'static str,
    sex: &'static str,
    birth: &'static str,
    has_my_number: bool,
    household: u64,
    branch: &'static str,
    family: &'static str,
    post: &'static str,
    address: &'static str,
) -> Person {
    Person {
        n,
        name,
        kana,
        sex,
        birth,
        has_my_number,
        household,
        branch,
        family,
        post,
        address,
    }
}

fn header(
    kind: FileKind,
    id: &str,
    sender: &str,
    time: &str,
    seq: u64,
    format: Format,
    enc: TextEncoding,
) -> FileHeader {
    FileHeader {
        kind,
        file_identifier: id.to_owned(),
        sender: InsurerNumber::parse(sender).expect("sample insurer numbers are valid"),
        creation_time: Timestamp::parse(time).expect("sample times are valid"),
        file_sequence: seq,
        format,
        encoding: enc,
    }
}

/// The cast (see samples/README.md), one line each: n, name, kana as delivered, Sex1, Birthdate,
/// has a My Number, household (card number), branch, 本人/家族, PostNumber, Address.
#[rustfmt::skip]
const CAST: [Person; 21] = [
    person(1, "山田　太郎", "ﾔﾏﾀﾞ ﾀﾛｳ", "1", "19680412", true, 1, "01", "1", "160-0023", "東京都新宿区西新宿四丁目１５番３号"),
    person(2, "山田　花子", "ヤマダ　ハナコ", "2", "19700823", true, 1, "02", "2", "160-0023", "東京都新宿区西新宿四丁目１５番３号"),
    person(3, "佐藤　美咲", "サトウ　ミサキ", "2", "19890317", true, 2, "01", "1", "169-0072", "東京都新宿区大久保二丁目４番１２号　コーポ大久保２０３号室"),
    person(4, "鈴木　由美", "ｽｽﾞｷ ﾕﾐ", "2", "19820109", true, 3, "01", "1", "169-0073", "東京都新宿区百人町三丁目２番８号"),
    person(5, "鈴木　陽菜", "ｽｽﾞｷ ﾋﾅ", "2", "20150622", true, 3, "02", "2", "169-0073", "東京都新宿区百人町三丁目２番８号"),
    person(6, "高橋　健一", "ﾀｶﾊｼ ｹﾝｲﾁ", "1", "19750930", true, 4, "01", "1", "162-0052", "東京都新宿区戸山二丁目１０番１号"),
    person(7, "田中　和子", "タナカ　カズコ", "2", "19520114", true, 5, "01", "1", "161-0033", "東京都新宿区下落合三丁目１７番２２号"),
    person(8, "伊藤　正雄", "ｲﾄｳ ﾏｻｵ", "1", "19520229", false, 6, "01", "1", "162-0825", "東京都新宿区神楽坂五丁目６番１号"),
    person(9, "渡辺　清", "ﾜﾀﾅﾍﾞ ｷﾖｼ", "1", "19520310", true, 7, "01", "1", "160-0004", "東京都新宿区四谷三丁目９番５号"),
    person(10, "中村　節子", "ナカムラ　セツコ", "2", "19560520", true, 8, "01", "1", "169-0074", "東京都新宿区北新宿一丁目７番３号"),
    person(11, "小林　美穂", "ｺﾊﾞﾔｼ ﾐﾎ", "2", "19910704", true, 9, "01", "1", "160-0022", "東京都新宿区新宿六丁目２７番１０号"),
    person(12, "加藤　勇", "ｶﾄｳ ｲｻﾑ", "1", "19590911", true, 10, "01", "1", "169-0075", "東京都新宿区高田馬場三丁目３番１号"),
    person(13, "𠮷田　花子", "ﾖｼﾀﾞ ﾊﾅｺ", "2", "19480707", true, 0, "00", "1", "160-0022", "東京都新宿区新宿二丁目１１番４号"),
    person(14, "山本　翔太", "ヤマモト　ショウタ", "1", "20010215", false, 11, "01", "1", "169-0075", "東京都新宿区高田馬場一丁目２４番１６号　ハイツ高田馬場３０２号室"),
    person(15, "井上　直樹", "ｲﾉｳｴ ﾅｵｷ", "1", "19790505", true, 12, "01", "1", "160-0023", "東京都新宿区西新宿七丁目２番６号"),
    person(16, "木村　陽子", "ｷﾑﾗ ﾖｳｺ", "2", "19850218", true, 13, "01", "1", "162-0825", "東京都新宿区神楽坂二丁目１３番７号"),
    person(17, "林　茂", "ﾊﾔｼ ｼｹﾞﾙ", "1", "19500402", true, 0, "00", "1", "161-0033", "東京都新宿区下落合一丁目５番９号"),
    person(18, "髙橋　誠一", "タカハシ　セイイチ", "1", "19640808", true, 14, "01", "1", "169-0072", "東京都新宿区大久保一丁目１番２号"),
    person(19, "斎藤　大輔", "ｻｲﾄｳ ﾀﾞｲｽｹ", "1", "19720120", true, 15, "01", "1", "160-0004", "東京都新宿区四谷一丁目８番１４号"),
    person(20, "斎藤　さくら", "サイトウ　サクラ", "2", "20080401", true, 15, "02", "2", "160-0004", "東京都新宿区四谷一丁目８番１４号"),
    person(21, "森　光子", "ﾓﾘ ﾐﾂｺ", "2", "19530612", true, 16, "01", "1", "169-0074", "東京都新宿区北新宿四丁目３番１０号"),
];

/// The night's files, in the order they apply (CreationTime).
///
/// A data table (hence longer than a function should be): six blocks, one per file, each its
/// rows as literals in the order they are written, then the file's header. It reads as the
/// night's story that samples/README.md tells; split up, one person's events would be spread
/// over six functions.
pub fn scenario() -> Vec<SampleFile> {
    use Format::{Csv, Xml};
    use TextEncoding::{ShiftJis, Utf8};
    let [
        taro,
        hanako,
        misaki,
        yumi,
        hina,
        kenichi,
        kazuko,
        masao,
        kiyoshi,
        setsuko,
        miho,
        isamu,
        yoshida,
        shota,
        naoki,
        yoko,
        shigeru,
        seiichi,
        daisuke,
        sakura,
        mitsuko,
    ] = CAST;

    let k = kokuho();
    let u = kouki();
    let mut files = Vec::new();

    // 1. 国保 subscriber registrations (the ledger's starting state), XML UTF-8.
    let rows = vec![
        kokuho_acquisition(&taro, "20180401", "04"),
        kokuho_acquisition(&hanako, "20180401", "04"),
        kokuho_acquisition(&misaki, "20260605", "03"),
        kokuho_acquisition(&yumi, "20251015", "03"),
        kokuho_acquisition(&hina, "20251015", "03"),
        kokuho_acquisition(&kenichi, "20210701", "04"),
        kokuho_acquisition(&kazuko, "20120114", "04"),
        kokuho_acquisition(&masao, "20120301", "04"),
        kokuho_acquisition(&kiyoshi, "20120401", "04"),
        kokuho_acquisition(&setsuko, "20160520", "04"),
        kokuho_acquisition(&miho, "20240401", "04"),
        kokuho_acquisition(&isamu, "20190911", "04"),
        kokuho_acquisition(&shota, "20230401", "04"),
        kokuho_acquisition(&naoki, "20220110", "04"),
        kokuho_acquisition(&yoko, "20200801", "03"),
        kokuho_acquisition(&seiichi, "20240930", "04"),
        kokuho_acquisition(&daisuke, "20190401", "04"),
        kokuho_acquisition(&sakura, "20190401", "04"),
        kokuho_acquisition(&mitsuko, "20130612", "04"),
    ];
    files.push(SampleFile {
        stem: format!("SubscriberChange_{k}_0340"),
        header: header(
            FileKind::SubscriberChange,
            "KK131045-20261129-0340",
            &k,
            "20261129220000",
            340,
            Xml,
            Utf8,
        ),
        rows,
    });

    // 2. 国保 tonight's changes: moves, a marriage, a death, a loss to 後期 (障害認定), CSV UTF-8.
    let moved = |p: &Person| {
        let mut r = base_change("2", "20261115", &k, &p.kokuho_key());
        r.set("PostNumber", "169-0075")
            .set("Address", "東京都新宿区高田馬場四丁目２番３８号");
        r
    };
    let mut married = base_change("2", "20261120", &k, &miho.kokuho_key());
    married.set("Name", "松本　美穂").set("NameKana", "ﾏﾂﾓﾄ ﾐﾎ");
    let mut died = base_change("3", "20261122", &k, &isamu.kokuho_key());
    died.set("DisqualificationDate", "20261122").set("ReasonOfLoss", "01");
    let mut to_kouki = base_change("3", "20261116", &k, &setsuko.kokuho_key());
    to_kouki
        .set("DisqualificationDate", "20261116")
        .set("ReasonOfLoss", "03");
    files.push(SampleFile {
        stem: format!("SubscriberChange_{k}_0341"),
        header: header(
            FileKind::SubscriberChange,
            "KK131045-20261130-0341",
            &k,
            "20261130190000",
            341,
            Csv,
            Utf8,
        ),
        rows: vec![moved(&taro), moved(&hanako), married, died, to_kouki],
    });

    // 3. 国保 flags, XML Shift_JIS.
    let mut all_tm04 = Row::new(FileKind::FlagChange);
    all_tm04
        .set("EffectiveTime", "20261130090000")
        .set("FlagType", "1")
        .set("Operation", "1")
        .set("Scope", "2")
        .set("InsurerNumber", &k)
        .set("InfoCode", "TM00000000000004")
        .set("Source", "9");
    let mut naoki_tm02 = flag(&naoki, "20261125164000", "1", "1", "", "9", "");
    naoki_tm02.set("InfoCode", "TM00000000000002");
    let rows = vec![
        // 住基 DV等支援措置: both protective flags with the measure's end date
        flag(&misaki, "20260610101200", "3", "1", "2", "2", "20270609"),
        flag(&misaki, "20260610101200", "2", "1", "", "2", "20270609"),
        // the measure ended 2026-10-19 and was not renewed yet: review, never released by itself
        flag(&yumi, "20251020093000", "3", "1", "2", "2", "20261019"),
        flag(&yumi, "20251020093000", "2", "1", "", "2", "20261019"),
        flag(&hina, "20251020093000", "3", "1", "2", "2", "20261019"),
        flag(&hina, "20251020093000", "2", "1", "", "2", "20261019"),
        // 提供対象外（情報提供者都合）, set ex officio
        flag(&kenichi, "20260901140000", "3", "1", "1", "3", ""),
        // turning 75 on 2027-01-14: the union must carry both
        flag(&kazuko, "20240415112000", "3", "1", "2", "1", ""),
        flag(&kazuko, "20240415112100", "2", "1", "", "1", ""),
        // born 29 February, turning 75 on 2027-03-01
        flag(&masao, "20250703150500", "2", "1", "", "1", ""),
        // 障害認定 route to 後期 on 2026-11-16
        flag(&setsuko, "20230111100000", "2", "1", "", "1", ""),
        naoki_tm02,
        flag(&yoko, "20250201103000", "2", "1", "", "1", ""),
        flag(&yoko, "20261128100000", "2", "2", "", "1", ""),
        all_tm04,
    ];
    files.push(SampleFile {
        stem: format!("FlagChange_{k}_0342"),
        header: header(
            FileKind::FlagChange,
            "KK131045-20261130-0342",
            &k,
            "20261130191500",
            342,
            Xml,
            ShiftJis,
        ),
        rows,
    });

    // 4. 国保 副本, CSV UTF-8.
    const QUAL: &str = "TM00000000000001";
    let ks = k.as_str();
    let rows = vec![
        fukuhon(
            &taro,
            "1",
            "20261130",
            QUAL,
            "0",
            &[("001", ks), ("002", "20180401"), ("004", "1")],
        ),
        fukuhon(
            &hanako,
            "1",
            "20261130",
            QUAL,
            "0",
            &[("001", ks), ("002", "20180401"), ("004", "2")],
        ),
        fukuhon(
            &kazuko,
            "1",
            "20261130",
            QUAL,
            "1",
            &[("001", ks), ("002", "20120114"), ("004", "1")],
        ),
        fukuhon(
            &kazuko,
            "1",
            "20261130",
            "TM00000000000003",
            "1",
            &[("001", "ウ"), ("002", "20270731")],
        ),
        fukuhon(
            &misaki,
            "1",
            "20261130",
            "TM00000000000002",
            "1",
            &[("001", "202609"), ("002", "84320")],
        ),
        fukuhon(
            &kenichi,
            "1",
            "20261130",
            "TM00000000000004",
            "",
            &[("001", "20260715"), ("002", "異常なし")],
        ),
        fukuhon(
            &setsuko,
            "1",
            "20261130",
            QUAL,
            "1",
            &[("001", ks), ("002", "20160520"), ("003", "20261116"), ("004", "1")],
        ),
        // 更新 and 削除 act on 副本 registered above, so the sample runs clean on a new ledger
        fukuhon(
            &shota,
            "1",
            "20261130",
            "TM00000000000003",
            "0",
            &[("001", "オ"), ("002", "20270731")],
        ),
        fukuhon(
            &kenichi,
            "2",
            "20261130",
            "TM00000000000004",
            "",
            &[("001", "20260715"), ("002", "要再検査")],
        ),
        fukuhon(&misaki, "3", "20261130", "TM00000000000002", "", &[]),
        fukuhon(
            &seiichi,
            "1",
            "20261130",
            QUAL,
            "0",
            &[("001", ks), ("002", "20240930"), ("004", "1")],
        ),
        fukuhon(
            &yoko,
            "1",
            "20261130",
            QUAL,
            "0",
            &[("001", ks), ("002", "20200801"), ("004", "1")],
        ),
    ];
    files.push(SampleFile {
        stem: format!("Fukuhon_{k}_0343"),
        header: header(
            FileKind::Fukuhon,
            "KK131045-20261130-0343",
            &k,
            "20261130193000",
            343,
            Csv,
            Utf8,
        ),
        rows,
    });

    // 5. 国保 → union hand-off of flagged members turning 75 within 6 months (R8), XML UTF-8.
    let rows = vec![
        handoff(&kazuko, "20270114", "2", "1", "0", "20240415112000"),
        handoff(&masao, "20270301", "0", "1", "0", "20250703150500"),
    ];
    files.push(SampleFile {
        stem: format!("AgeTransitionHandoff_{k}_0344"),
        header: header(
            FileKind::AgeTransitionHandoff,
            "KK131045-20261130-0344",
            &k,
            "20261130200000",
            344,
            Xml,
            Utf8,
        ),
        rows,
    });

    // 6. The union's registrations, CSV Shift_JIS.
    let rows = vec![
        kouki_acquisition(&shigeru, "20250402", "01"),
        kouki_acquisition(&yoshida, "20261105", "03"),
        kouki_acquisition(&setsuko, "20261116", "02"),
        kouki_acquisition(&kazuko, "20270114", "01"),
        kouki_acquisition(&masao, "20270301", "01"),
        kouki_acquisition(&kiyoshi, "20270310", "01"),
    ];
    files.push(SampleFile {
        stem: format!("SubscriberChange_{u}_0087"),
        header: header(
            FileKind::SubscriberChange,
            "KU131040-20261130-0087",
            &u,
            "20261130210000",
            87,
            Csv,
            ShiftJis,
        ),
        rows,
    });
    files
}

/// The R13 exchange of a two-ledger site (国保 and the union in separate ledgers; see
/// samples/README.md): the union's registration inquiry of the night and the 国保 side's
/// answer. Not in `inbox/` (they pass between the two sites); under `formats/` in every variant.
pub fn exchange() -> Vec<SampleFile> {
    use Format::Csv;
    use TextEncoding::ShiftJis;
    let [kiyoshi, setsuko, shigeru] = [CAST[8], CAST[9], CAST[16]];
    let (k, u) = (kokuho(), kouki());
    let inquiry = |p: &Person, qualification: &str, reason: &str| {
        let mut r = Row::new(FileKind::AgeTransitionInquiry);
        r.set("InsurerNumber", kouki())
            .set("SubscriberKey", p.kouki_key())
            .set("IndividualNumber", p.my_number())
            .set("MunicipalityCode", municipality_code(SHINJUKU))
            .set("ResidentCode", p.resident())
            .set("Name", p.name)
            .set("NameKana", p.kana)
            .set("Sex1", p.sex)
            .set("Birthdate", p.birth)
            .set("QualificationDate", qualification)
            .set("ReasonOfQualification", reason);
        r
    };
    let mut unknown = handoff(&shigeru, "20250402", "0", "0", "0", "");
    unknown.set("SourceSubscriberKey", "");
    vec![
        // the union's run of 2026-12-01: three 01/02 registrations it cannot match
        SampleFile {
            stem: format!("AgeTransitionInquiry_{}_0088", municipality_code(SHINJUKU)),
            header: header(
                FileKind::AgeTransitionInquiry,
                "KU131040-20261201-0088",
                &u,
                "20261201000000",
                88,
                Csv,
                ShiftJis,
            ),
            rows: vec![
                inquiry(&kiyoshi, "20270310", "01"),
                inquiry(&setsuko, "20261116", "02"),
                inquiry(&shigeru, "20250402", "01"),
            ],
        },
        // 国保's answer: no flags, 不開示該当, and a person 国保 does not know
        SampleFile {
            stem: format!("AgeTransitionHandoff_{k}_0345"),
            header: header(
                FileKind::AgeTransitionHandoff,
                "KK131045-20261202-0345",
                &k,
                "20261202000000",
                345,
                Csv,
                ShiftJis,
            ),
            rows: vec![
                handoff(&kiyoshi, "20270310", "0", "0", "0", ""),
                handoff(&setsuko, "20261116", "0", "1", "0", "20230111100000"),
                unknown,
            ],
        },
    ]
}

/// A character written as `●`: the file's stem, the record's RecordSequence and the character.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replacement {
    pub stem: String,
    pub seq: u64,
    pub char: UnmappableChar,
}

/// Renders one file in the given format and encoding (the header's other fields unchanged).
pub fn render(
    file: &SampleFile,
    format: Format,
    encoding: TextEncoding,
) -> Result<(Vec<u8>, Vec<Replacement>), WriteError> {
    let header = FileHeader {
        format,
        encoding,
        ..file.header.clone()
    };
    let mut w = RecordWriter::start(Vec::new(), header, UnmappablePolicy::Replace)?;
    let mut replaced = Vec::new();
    for row in &file.rows {
        let mut row = row.clone();
        let seq = w.count() + 1;
        for c in row.write_to(&mut w)? {
            replaced.push(Replacement {
                stem: file.stem.clone(),
                seq,
                char: c,
            });
        }
    }
    let (bytes, _, _) = w.finish()?;
    Ok((bytes, replaced))
}

fn encoding_dir(e: TextEncoding) -> &'static str {
    match e {
        TextEncoding::Utf8 => "utf-8",
        TextEncoding::ShiftJis => "shift_jis",
    }
}

/// A rendered file: its path relative to `samples/` and its bytes.
pub type SampleBytes = (String, Vec<u8>);

/// Every file of `samples/` this module owns, as (path relative to `samples/`, bytes), and the
/// characters replaced by `●` on the way.
pub fn sample_set() -> Result<(Vec<SampleBytes>, Vec<Replacement>), WriteError> {
    let mut out = Vec::new();
    let mut replaced = Vec::new();
    let files = scenario();
    for f in &files {
        let (bytes, r) = render(f, f.header.format, f.header.encoding)?;
        out.push((format!("inbox/{}.{}", f.stem, f.header.format.extension()), bytes));
        replaced.extend(r);
    }
    let files: Vec<SampleFile> = files.into_iter().chain(exchange()).collect();
    for format in [Format::Xml, Format::Csv] {
        for encoding in [TextEncoding::Utf8, TextEncoding::ShiftJis] {
            for f in &files {
                let (bytes, r) = render(f, format, encoding)?;
                let path = format!(
                    "formats/{}/{}/{}.{}",
                    format.extension(),
                    encoding_dir(encoding),
                    f.stem,
                    format.extension()
                );
                out.push((path, bytes));
                replaced.extend(r);
            }
        }
    }
    Ok((out, replaced))
}
