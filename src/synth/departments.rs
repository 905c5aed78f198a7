//! The departments: who holds which subset of the population, under which column names,
//! in which formats and with how much noise.

use super::noise::{self, Ctx, DateStyle, GenderStyle, KINDS, NoiseKind as K, Rates};
use super::population::{Enterprise, Person};

/// A department whose records the generator writes (one Parquet file each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Department {
    PublicSecurity,
    CivilAffairs,
    SocialInsurance,
    Health,
    Education,
    TaxPersons,
    MarketRegulation,
    TaxEnterprises,
    SocialInsuranceUnits,
}

/// What a department's records describe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntityKind {
    Person,
    Enterprise,
}

impl EntityKind {
    pub fn name(self) -> &'static str {
        match self {
            EntityKind::Person => "person",
            EntityKind::Enterprise => "enterprise",
        }
    }
}

impl Department {
    pub const ALL: [Department; 9] = [
        Department::PublicSecurity,
        Department::CivilAffairs,
        Department::SocialInsurance,
        Department::Health,
        Department::Education,
        Department::TaxPersons,
        Department::MarketRegulation,
        Department::TaxEnterprises,
        Department::SocialInsuranceUnits,
    ];

    /// The source name in the job file and the truth files (`<name>.parquet`).
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    pub fn kind(self) -> EntityKind {
        self.spec().kind
    }

    pub(crate) fn spec(self) -> &'static Spec {
        &SPECS[self as usize]
    }

    /// Default rate of `kind` before `noise_scale`.
    pub fn default_rate(self, kind: K) -> f64 {
        use Department as D;
        let base = match kind {
            K::DuplicateRecord => 0.03,
            K::NameMissing => 0.005,
            K::NamePlaceholder => 0.003,
            K::NamePinyin => 0.01,
            K::NameTraditional => 0.01,
            K::NameHomophone => 0.03,
            K::NameShape => 0.01,
            K::NameDropChar => 0.01,
            K::NameSwapChars => 0.005,
            K::IdMissing => 0.02,
            K::IdPlaceholder => 0.01,
            K::IdLegacy15 => 0.05,
            K::IdTypo => 0.02,
            K::IdTranspose => 0.01,
            K::IdLowerX => 0.3,
            K::IdFullWidth => 0.02,
            K::GenderMissing => 0.01,
            K::GenderFlip => 0.005,
            K::DateMissing => 0.01,
            K::DatePlaceholder => 0.005,
            K::DateSwapDayMonth => 0.02,
            K::DateOtherFormat => 0.03,
            K::PhoneMissing => 0.05,
            K::PhonePlaceholder => 0.01,
            K::PhoneChanged => 0.1,
            K::PhoneFormatted => 0.1,
            K::AddressMissing => 0.03,
            K::AddressPlaceholder => 0.01,
            K::AddressMoved => 0.1,
            K::AddressVariant => 0.3,
            K::EmployerMissing => 0.05,
            K::EmployerVariant => 0.2,
            K::EntNameVariant => 0.25,
            K::UsccMissing => 0.01,
            K::UsccLegacy => 0.0,
            K::UsccTypo => 0.01,
            K::UsccLowerCase => 0.02,
            K::OrgCodeMissing => 0.02,
            K::OrgCodeNoHyphen => 0.2,
            K::RegNumberMissing => 0.05,
        };
        // Department-specific rates, not scaled by the department's noise level.
        match (self, kind) {
            (D::Health, K::IdMissing) => return 0.6,
            (D::Health, K::NamePinyin) => return 0.03,
            (D::Health, K::AddressMoved) => return 0.3,
            (D::TaxEnterprises, K::UsccLegacy) => return 0.28,
            (D::SocialInsuranceUnits, K::UsccLegacy) => return 0.35,
            (D::PublicSecurity, K::DuplicateRecord) => return 0.02,
            // Enterprises keep their address and phone across departments here.
            (
                D::MarketRegulation | D::TaxEnterprises | D::SocialInsuranceUnits,
                K::AddressMoved | K::PhoneChanged,
            ) => return 0.0,
            (D::MarketRegulation, K::DuplicateRecord) => return 0.02,
            _ => {}
        }
        let level = match self {
            D::PublicSecurity => 0.3,
            D::MarketRegulation => 0.5,
            D::Health => 1.5,
            D::SocialInsuranceUnits => 1.2,
            _ => 1.0,
        };
        base * level
    }

    /// Probability that a department holds a record of this person.
    pub(crate) fn person_coverage(self, p: &Person) -> f64 {
        let year = p.birth.year;
        match self {
            Department::PublicSecurity => 0.9,
            Department::CivilAffairs => 0.35,
            Department::SocialInsurance if p.employer.is_some() => 0.75,
            Department::SocialInsurance if (1955..=2002).contains(&year) => 0.1,
            Department::Health => 0.5,
            Department::Education if year >= 2002 => 0.85,
            Department::Education if year >= 1990 => 0.1,
            Department::Education => 0.02,
            Department::TaxPersons if p.employer.is_some() => 0.5,
            _ => 0.0,
        }
    }

    pub(crate) fn enterprise_coverage(self) -> f64 {
        match self {
            Department::MarketRegulation => 0.95,
            Department::TaxEnterprises => 0.8,
            Department::SocialInsuranceUnits => 0.6,
            _ => 0.0,
        }
    }
}

/// What a column holds: the generator renders it with the matching noise.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Field {
    Name,
    IdNumber,
    Gender(GenderStyle),
    BirthDate(DateStyle),
    Phone,
    Address,
    Employer,
    EntName,
    /// The USCC; null in a record kept in legacy form.
    Uscc,
    /// The USCC, or the 15-digit registration number in a legacy record.
    UsccOrLegacy,
    /// `XXXXXXXX-X`, present only in a legacy record.
    OrgCode,
    /// The 15-digit registration number, for enterprises registered before 2015.
    RegNumber,
    LegalRep,
    LegalRepId,
    EntAddress,
    EntPhone,
}

pub(crate) struct Column {
    pub header: &'static str,
    pub field: Field,
    /// The canonical field the job file maps the column to.
    pub canonical: &'static str,
}

const fn col(header: &'static str, field: Field, canonical: &'static str) -> Column {
    Column {
        header,
        field,
        canonical,
    }
}

pub(crate) struct Spec {
    pub name: &'static str,
    pub kind: EntityKind,
    pub id_header: &'static str,
    /// Prefix of the department's own record ids (`GA00001234`).
    pub id_prefix: &'static str,
    pub columns: &'static [Column],
}

use DateStyle as DS;
use Field as F;
use GenderStyle as GS;

static SPECS: [Spec; 9] = [
    Spec {
        name: "public_security",
        kind: EntityKind::Person,
        id_header: "人员编号",
        id_prefix: "GA",
        columns: &[
            col("姓名", F::Name, "name"),
            col("公民身份号码", F::IdNumber, "id_number"),
            col("性别", F::Gender(GS::Chinese), "gender"),
            col("出生日期", F::BirthDate(DS::Iso), "birth_date"),
            col("住址", F::Address, "address"),
            col("联系电话", F::Phone, "phone"),
        ],
    },
    Spec {
        name: "civil_affairs",
        kind: EntityKind::Person,
        id_header: "编号",
        id_prefix: "MZ",
        columns: &[
            col("姓名", F::Name, "name"),
            col("身份证号", F::IdNumber, "id_number"),
            col("性别", F::Gender(GS::Chinese), "gender"),
            col("出生日期", F::BirthDate(DS::Chinese), "birth_date"),
            col("户籍地址", F::Address, "address"),
        ],
    },
    Spec {
        name: "social_insurance",
        kind: EntityKind::Person,
        id_header: "个人编号",
        id_prefix: "SB",
        columns: &[
            col("姓名", F::Name, "name"),
            col("证件号码", F::IdNumber, "id_number"),
            col("出生年月", F::BirthDate(DS::Slash), "birth_date"),
            col("手机号", F::Phone, "phone"),
            col("单位名称", F::Employer, "employer"),
        ],
    },
    Spec {
        name: "health",
        kind: EntityKind::Person,
        id_header: "病案号",
        id_prefix: "BA",
        columns: &[
            col("患者姓名", F::Name, "name"),
            col("身份证号", F::IdNumber, "id_number"),
            col("性别", F::Gender(GS::Code), "gender"),
            col("出生日期", F::BirthDate(DS::Compact), "birth_date"),
            col("联系电话", F::Phone, "phone"),
            col("现住址", F::Address, "address"),
        ],
    },
    Spec {
        name: "education",
        kind: EntityKind::Person,
        id_header: "学籍号",
        id_prefix: "XJ",
        columns: &[
            col("学生姓名", F::Name, "name"),
            col("身份证件号", F::IdNumber, "id_number"),
            col("出生日期", F::BirthDate(DS::Iso), "birth_date"),
            col("家庭住址", F::Address, "address"),
        ],
    },
    Spec {
        name: "tax_persons",
        kind: EntityKind::Person,
        id_header: "纳税人编号",
        id_prefix: "NS",
        columns: &[
            col("姓名", F::Name, "name"),
            col("身份证号码", F::IdNumber, "id_number"),
            col("手机号码", F::Phone, "phone"),
            col("任职单位", F::Employer, "employer"),
        ],
    },
    Spec {
        name: "market_regulation",
        kind: EntityKind::Enterprise,
        id_header: "登记编号",
        id_prefix: "DJ",
        columns: &[
            col("统一社会信用代码", F::Uscc, "uscc"),
            col("企业名称", F::EntName, "name"),
            col("法定代表人", F::LegalRep, "legal_rep"),
            col("法定代表人证件号", F::LegalRepId, "legal_rep_id"),
            col("住所", F::EntAddress, "address"),
            col("联系电话", F::EntPhone, "phone"),
            col("原注册号", F::RegNumber, "reg_number"),
        ],
    },
    Spec {
        name: "tax_enterprises",
        kind: EntityKind::Enterprise,
        id_header: "税务档案号",
        id_prefix: "SW",
        columns: &[
            col("纳税人识别号", F::UsccOrLegacy, "uscc"),
            col("纳税人名称", F::EntName, "name"),
            col("组织机构代码", F::OrgCode, "org_code"),
            col("经营地址", F::EntAddress, "address"),
        ],
    },
    Spec {
        name: "social_insurance_units",
        kind: EntityKind::Enterprise,
        id_header: "单位编号",
        id_prefix: "DW",
        columns: &[
            col("单位名称", F::EntName, "name"),
            col("统一社会信用代码", F::Uscc, "uscc"),
            col("组织机构代码", F::OrgCode, "org_code"),
            col("单位地址", F::EntAddress, "address"),
        ],
    },
];

impl Spec {
    /// True when some record may be held in legacy form (registration number / org code).
    fn has_legacy_columns(&self) -> bool {
        self.columns
            .iter()
            .any(|c| matches!(c.field, F::UsccOrLegacy | F::OrgCode))
    }
}

/// The department's noisy copy of one person, in column order (record id excluded).
pub(crate) fn person_record(
    spec: &Spec,
    ctx: &mut Ctx,
    p: &Person,
    enterprises: &[Enterprise],
) -> Vec<Option<String>> {
    spec.columns
        .iter()
        .map(|c| match c.field {
            F::Name => noise::person_name(ctx, p.surname(), &p.given),
            F::IdNumber => noise::id_number(ctx, &p.id, p.birth.year),
            F::Gender(style) => noise::gender(ctx, p.male, style),
            F::BirthDate(style) => noise::date(ctx, p.birth, style),
            F::Phone => noise::phone(ctx, p.phone, p.new_phone),
            F::Address => noise::address(ctx, &p.address, &p.moved),
            F::Employer => p
                .employer
                .filter(|&e| (e as usize) < enterprises.len())
                .and_then(|e| noise::enterprise_name_field(ctx, enterprises, e as usize, true)),
            _ => None,
        })
        .collect()
}

/// The department's noisy copy of enterprise `j`, in column order (record id excluded).
pub(crate) fn enterprise_record(
    spec: &Spec,
    ctx: &mut Ctx,
    all: &[Enterprise],
    j: usize,
    persons: &[Person],
) -> Vec<Option<String>> {
    let e = &all[j];
    let legacy = spec.has_legacy_columns() && e.reg_number.is_some() && ctx.roll(K::UsccLegacy);
    let rep = e.legal_rep.and_then(|k| persons.get(k as usize));
    spec.columns
        .iter()
        .map(|c| match c.field {
            F::EntName => noise::enterprise_name_field(ctx, all, j, false),
            F::Uscc if legacy => None,
            F::Uscc => noise::uscc(ctx, e.uscc_str()),
            F::UsccOrLegacy if legacy => noise::reg_number(ctx, e.reg_str()),
            F::UsccOrLegacy => noise::uscc(ctx, e.uscc_str()),
            F::OrgCode if legacy => noise::org_code(ctx, e.org_code()),
            F::OrgCode => None,
            F::RegNumber => noise::reg_number(ctx, e.reg_str()),
            F::LegalRep => rep.and_then(|p| noise::person_name(ctx, p.surname(), &p.given)),
            F::LegalRepId => rep.and_then(|p| noise::id_number(ctx, &p.id, p.birth.year)),
            F::EntAddress => noise::address(ctx, &e.address, &e.address),
            F::EntPhone => noise::phone(ctx, e.phone, e.phone),
            _ => None,
        })
        .collect()
}

/// Rates of every kind for a department: defaults scaled by `noise_scale`, then overrides.
pub(crate) fn rates(
    dept: Department,
    noise_scale: f64,
    overrides: &[super::RateOverride],
) -> Rates {
    let scale = if noise_scale.is_finite() {
        noise_scale.max(0.0)
    } else {
        0.0
    };
    let mut r = [0.0; KINDS];
    for &kind in noise::NoiseKind::ALL {
        r[kind as usize] = (dept.default_rate(kind) * scale).clamp(0.0, 1.0);
    }
    for o in overrides {
        if o.department.is_none_or(|d| d == dept) && o.rate.is_finite() {
            r[o.kind as usize] = o.rate.clamp(0.0, 1.0);
        }
    }
    r
}
