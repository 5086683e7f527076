//! Small embedded lists the generator combines: names with readings, municipalities with towns
//! and postal codes. Readings are full-width katakana; writers convert them to half-width with
//! [`crate::domain::text::normalize_kana`] where the file should carry half-width.

/// A family or given name and its reading.
pub type NameReading = (&'static str, &'static str);

/// Common family names (roughly by frequency), plus a few written with CP932 extension
/// characters (髙, 﨑, 齊, 邊) that real ledgers hold and encoders must not lose.
pub const FAMILY: &[NameReading] = &[
    ("佐藤", "サトウ"),
    ("鈴木", "スズキ"),
    ("高橋", "タカハシ"),
    ("田中", "タナカ"),
    ("伊藤", "イトウ"),
    ("渡辺", "ワタナベ"),
    ("山本", "ヤマモト"),
    ("中村", "ナカムラ"),
    ("小林", "コバヤシ"),
    ("加藤", "カトウ"),
    ("吉田", "ヨシダ"),
    ("山田", "ヤマダ"),
    ("佐々木", "ササキ"),
    ("山口", "ヤマグチ"),
    ("松本", "マツモト"),
    ("井上", "イノウエ"),
    ("木村", "キムラ"),
    ("林", "ハヤシ"),
    ("斎藤", "サイトウ"),
    ("清水", "シミズ"),
    ("山崎", "ヤマザキ"),
    ("森", "モリ"),
    ("池田", "イケダ"),
    ("橋本", "ハシモト"),
    ("阿部", "アベ"),
    ("石川", "イシカワ"),
    ("山下", "ヤマシタ"),
    ("中島", "ナカジマ"),
    ("石井", "イシイ"),
    ("小川", "オガワ"),
    ("前田", "マエダ"),
    ("岡田", "オカダ"),
    ("長谷川", "ハセガワ"),
    ("藤田", "フジタ"),
    ("後藤", "ゴトウ"),
    ("近藤", "コンドウ"),
    ("村上", "ムラカミ"),
    ("遠藤", "エンドウ"),
    ("青木", "アオキ"),
    ("坂本", "サカモト"),
    ("髙橋", "タカハシ"),
    ("山﨑", "ヤマザキ"),
    ("齊藤", "サイトウ"),
    ("渡邊", "ワタナベ"),
];

/// A family name outside CP932 (𠮷, U+20BB7): written as `●` in Shift_JIS with the replace policy.
pub const FAMILY_OUTSIDE_CP932: NameReading = ("𠮷田", "ヨシダ");

pub const GIVEN_MALE: &[NameReading] = &[
    ("太郎", "タロウ"),
    ("一郎", "イチロウ"),
    ("健一", "ケンイチ"),
    ("誠", "マコト"),
    ("浩", "ヒロシ"),
    ("清", "キヨシ"),
    ("茂", "シゲル"),
    ("勇", "イサム"),
    ("正雄", "マサオ"),
    ("大輔", "ダイスケ"),
    ("翔太", "ショウタ"),
    ("拓也", "タクヤ"),
    ("健太", "ケンタ"),
    ("直樹", "ナオキ"),
    ("和彦", "カズヒコ"),
    ("隆", "タカシ"),
    ("修", "オサム"),
    ("蓮", "レン"),
    ("大翔", "ヒロト"),
    ("悠真", "ユウマ"),
    ("湊", "ミナト"),
    ("陽翔", "ハルト"),
    ("誠一", "セイイチ"),
    ("秀樹", "ヒデキ"),
    ("健二", "ケンジ"),
    ("達也", "タツヤ"),
    ("雄一", "ユウイチ"),
    ("昭二", "ショウジ"),
];

pub const GIVEN_FEMALE: &[NameReading] = &[
    ("花子", "ハナコ"),
    ("和子", "カズコ"),
    ("節子", "セツコ"),
    ("幸子", "サチコ"),
    ("洋子", "ヨウコ"),
    ("美穂", "ミホ"),
    ("由美", "ユミ"),
    ("恵子", "ケイコ"),
    ("久美子", "クミコ"),
    ("美咲", "ミサキ"),
    ("陽菜", "ヒナ"),
    ("結衣", "ユイ"),
    ("さくら", "サクラ"),
    ("愛", "アイ"),
    ("真由美", "マユミ"),
    ("直美", "ナオミ"),
    ("智子", "トモコ"),
    ("理恵", "リエ"),
    ("光子", "ミツコ"),
    ("陽子", "ヨウコ"),
    ("明美", "アケミ"),
    ("凛", "リン"),
    ("芽依", "メイ"),
    ("葵", "アオイ"),
    ("千尋", "チヒロ"),
];

/// A town (町名) and its postal code.
pub struct Town {
    pub name: &'static str,
    pub post: &'static str,
}

/// A municipality: its 地方公共団体コード body (5 digits, pref 2 + 3) and a few towns. The 国保
/// and 後期 insurer numbers are derived from the body (pref 2 + the same 3 digits), as Tokyo's are.
pub struct Municipality {
    pub pref_name: &'static str,
    pub name: &'static str,
    pub code_body: &'static str,
    pub towns: &'static [Town],
}

const fn t(name: &'static str, post: &'static str) -> Town {
    Town { name, post }
}

/// Four Tokyo municipalities: all under 東京都後期高齢者医療広域連合.
pub const MUNICIPALITIES: &[Municipality] = &[
    Municipality {
        pref_name: "東京都",
        name: "新宿区",
        code_body: "13104",
        towns: &[
            t("西新宿", "160-0023"),
            t("新宿", "160-0022"),
            t("高田馬場", "169-0075"),
            t("大久保", "169-0072"),
            t("百人町", "169-0073"),
            t("四谷", "160-0004"),
            t("神楽坂", "162-0825"),
            t("戸山", "162-0052"),
            t("北新宿", "169-0074"),
            t("下落合", "161-0033"),
        ],
    },
    Municipality {
        pref_name: "東京都",
        name: "世田谷区",
        code_body: "13112",
        towns: &[
            t("三軒茶屋", "154-0024"),
            t("太子堂", "154-0004"),
            t("北沢", "155-0031"),
            t("成城", "157-0066"),
            t("用賀", "158-0097"),
            t("経堂", "156-0052"),
            t("桜新町", "154-0015"),
            t("奥沢", "158-0083"),
            t("上馬", "154-0011"),
            t("砧", "157-0073"),
        ],
    },
    Municipality {
        pref_name: "東京都",
        name: "八王子市",
        code_body: "13201",
        towns: &[
            t("旭町", "192-0083"),
            t("明神町", "192-0046"),
            t("南大沢", "192-0364"),
            t("高尾町", "193-0844"),
            t("横山町", "192-0081"),
            t("元本郷町", "192-0051"),
            t("別所", "192-0363"),
            t("北野町", "192-0906"),
        ],
    },
    Municipality {
        pref_name: "東京都",
        name: "町田市",
        code_body: "13209",
        towns: &[
            t("原町田", "194-0013"),
            t("中町", "194-0021"),
            t("森野", "194-0022"),
            t("玉川学園", "194-0041"),
            t("鶴川", "195-0061"),
            t("鶴間", "194-0004"),
            t("金森", "194-0012"),
        ],
    },
];

pub const BUILDINGS: &[&str] = &[
    "コーポ",
    "ハイツ",
    "メゾン",
    "パークハウス",
    "レジデンス",
    "グリーンコート",
];

pub const CHOME: &[&str] = &["一", "二", "三", "四", "五", "六"];

/// 特定健診 findings (所見).
pub const FINDINGS: &[&str] = &["異常なし", "要経過観察", "要精密検査", "要医療"];

/// 限度額適用認定 区分.
pub const LIMIT_CLASSES: &[&str] = &["ア", "イ", "ウ", "エ", "オ"];
