// Labels in Chinese and English. The choice is kept in localStorage
// (`fieldseal.lang`); without one, the browser's language decides.

const KEY = 'fieldseal.lang';

// key: [中文, English]
const L = {
  title: ['执法音像记录', 'Enforcement recordings'],
  switchTo: ['English', '中文'],
  switchLabel: ['切换语言', 'Switch language'],
  login: ['登录', 'Log in'],
  logout: ['退出', 'Log out'],
  user: ['用户名', 'User name'],
  password: ['密码', 'Password'],
  loginFailed: ['用户名或密码错误', 'Wrong user name or password'],
  throttled: ['尝试次数过多，请稍候', 'Too many attempts; wait a moment'],
  cases: ['案件', 'Cases'],
  devices: ['设备', 'Devices'],
  audit: ['访问日志', 'Access log'],
  number: ['案件编号', 'Case number'],
  body: ['执法机关', 'Enforcement body'],
  officers: ['执法人员', 'Officers'],
  certificate: ['执法证号', 'Certificate'],
  staffKind: ['人员类别', 'Staff'],
  auxiliary: ['执法辅助人员', 'Auxiliary staff'],
  certified: ['持证执法人员', 'Certified officer'],
  validity: ['有效期', 'Valid'],
  today: ['今日', 'Today'],
  certValid: ['有效', 'Valid'],
  certInvalid: ['无效', 'Not valid'],
  major: ['重大执法决定', 'Major decision'],
  compliance: ['音像记录合规', 'Recording compliance'],
  compliant: ['合规', 'Compliant'],
  notCompliant: ['不合规', 'Not compliant'],
  findingsN: ['{0} 项问题', '{0} findings'],
  loading: ['加载中…', 'Loading…'],
  none: ['无', 'None'],
  stages: ['执法全过程（第二十七条第一款）', 'Stages of the whole process (Art. 27 ¶1)'],
  'stage.start': ['启动', 'Start'],
  'stage.investigation': ['调查取证', 'Investigation'],
  'stage.review': ['审核', 'Review'],
  'stage.decision': ['决定', 'Decision'],
  'stage.service': ['送达', 'Service'],
  'stage.execution': ['执行', 'Execution'],
  stageMissing: ['缺少记录', 'No record'],
  stageNotYet: ['尚未进行', 'Not reached'],
  activities: ['执法活动', 'Activities'],
  requirement: ['记录要求', 'Requirement'],
  'req.continuous-av': ['全过程无间断音像记录', 'Uninterrupted audio-video'],
  'req.av': ['音像记录', 'Audio-video'],
  'req.text': ['文字记录', 'Text'],
  window: ['时间', 'Time'],
  place: ['地点', 'Place'],
  timeline: ['时间轴', 'Timeline'],
  legendCovered: ['已验证的音像', 'Verified media'],
  legendUnverified: ['未验证的音像', 'Unverified media'],
  legendExplained: ['有签名说明的中断', 'Gap with a signed reason'],
  legendUnexplained: ['无说明的中断', 'Unexplained gap'],
  gap: ['中断', 'Gap'],
  explainedBy: ['签名说明：{0}（设备 {1} 第 {2} 条）', 'Signed reason: {0} (device {1}, entry {2})'],
  unexplained: ['无签名说明', 'No signed reason'],
  findings: ['问题', 'Findings'],
  recordings: ['音像记录', 'Recordings'],
  device: ['设备', 'Device'],
  seqs: ['条目', 'Entries'],
  verified: ['已验证', 'Verified'],
  notVerified: ['未验证', 'Not verified'],
  play: ['播放', 'Play'],
  exportCase: ['导出证据包', 'Download evidence package'],
  player: ['回放', 'Playback'],
  live: ['实时', 'Live'],
  position: ['位置', 'Position'],
  place: ['{0}（精度 {1}，定位时间 {2}）', '{0} (accuracy {1}, fix time {2})'],
  placeUntimed: ['{0}（精度 {1}，未记录定位时间）', '{0} (accuracy {1}, fix time not recorded)'],
  metres: ['{0} 米', '{0} m'],
  accuracyUnknown: ['未知', 'unknown'],
  noFix: ['无定位：{0}', 'No fix: {0}'],
  'noFix.no-receiver': ['设备未配置定位接收机', 'no receiver configured'],
  'noFix.receiver-unreachable': ['定位服务（gpsd）无响应', 'gpsd unreachable'],
  'noFix.no-fix-yet': ['尚未取得定位', 'no fix yet'],
  'noFix.fix-lost': ['定位丢失', 'fix lost'],
  positionUnstated: ['未记录位置', 'not recorded'],
  seq: ['条目序号', 'Entry'],
  wall: ['设备时间', 'Device time'],
  segmentsN: ['{0} 个片段', '{0} segments'],
  prevSeg: ['上一片段', 'Previous segment'],
  nextSeg: ['下一片段', 'Next segment'],
  mediaError: ['无法播放：{0}', 'Cannot play: {0}'],
  noPlayer: ['此浏览器无法播放 HLS，且服务器未内置播放器（hls.js）', 'This browser cannot play HLS and the server was built without the player (hls.js)'],
  name: ['名称', 'Name'],
  connected: ['在线', 'Connected'],
  offline: ['离线', 'Offline'],
  lastSent: ['最后发送', 'Last sent'],
  entriesN: ['条目数', 'Entries'],
  revoked: ['已吊销', 'Revoked'],
  recordingNow: ['正在录制', 'Recording now'],
  notRecording: ['未在录制', 'Not recording'],
  offlineSince: ['设备离线。最后发送：{0}（{1}）', 'The device is offline. It last sent: {0} ({1})'],
  neverSent: ['设备离线，尚未发送任何记录', 'The device is offline and has sent nothing yet'],
  liveBehind: ['落后采集约 {0} 秒', 'About {0} s behind capture'],
  entries: ['条目', 'Entries'],
  kind: ['类型', 'Kind'],
  start: ['开始', 'Start'],
  end: ['结束', 'End'],
  media: ['媒体', 'Media'],
  held: ['已归档并验证', 'Archived, verified'],
  notHeld: ['尚未收到', 'Not arrived'],
  received: ['服务器回执', 'Receipt'],
  time: ['时间', 'Time'],
  action: ['操作', 'Action'],
  actor: ['操作人', 'Actor'],
  detail: ['详情', 'Detail'],
  more: ['更多', 'More'],
  notFound: ['未找到', 'Not found'],
  forbidden: ['无权查看', 'Not allowed'],
  error: ['出错：{0}', 'Error: {0}'],
  skip: ['跳到主要内容', 'Skip to content'],
};

let current = (() => {
  const saved = localStorage.getItem(KEY);
  if (saved === 'zh' || saved === 'en') return saved;
  return (navigator.language || '').toLowerCase().startsWith('zh') ? 'zh' : 'en';
})();

/** The current language: `zh` or `en`. */
export function lang() { return current; }

/** Switch to `l` and remember it. */
export function setLang(l) {
  current = l === 'zh' ? 'zh' : 'en';
  localStorage.setItem(KEY, current);
  document.documentElement.lang = current === 'zh' ? 'zh-CN' : 'en';
}

/** The label `key` in the current language, `{0}`, `{1}`… filled from `args`. */
export function t(key, ...args) {
  const pair = L[key];
  const s = pair ? pair[current === 'zh' ? 0 : 1] : key;
  return s.replace(/\{(\d)\}/g, (_, i) => String(args[Number(i)] ?? ''));
}

/** A time (µs since the epoch) as the reader's local date and time. */
export function fmtTime(us) {
  if (us === null || us === undefined) return '—';
  const d = new Date(us / 1000);
  return d.toLocaleString(current === 'zh' ? 'zh-CN' : 'en-GB', { hour12: false });
}

/** A time with milliseconds (device wall clock in the player). */
export function fmtPrecise(date) {
  if (!date) return '—';
  const loc = current === 'zh' ? 'zh-CN' : 'en-GB';
  return date.toLocaleString(loc, { hour12: false }) + '.' + String(date.getMilliseconds()).padStart(3, '0');
}
